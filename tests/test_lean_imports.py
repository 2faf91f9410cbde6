"""The command keeps out of its process the packages diffusers imports but facediff never
uses (facediff.imports): transformers, peft and scipy cost seconds of every start-up."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
from sampling_helpers import make_run
from script_helpers import script_env

from facediff.imports import ENV, UNUSED, keep_out


@pytest.fixture
def clean_modules():
    """Leave ``sys.modules`` as it was for the names keep_out touches."""
    saved = {name: sys.modules[name] for name in UNUSED if name in sys.modules}
    for name in UNUSED:
        sys.modules.pop(name, None)
    yield
    for name in UNUSED:
        sys.modules.pop(name, None)
    sys.modules.update(saved)


def test_keep_out_marks_the_unused_packages_absent(clean_modules):
    already = types.ModuleType("peft")
    sys.modules["peft"] = already  # imported before: left alone
    assert keep_out({}) == ["transformers", "scipy"]
    assert sys.modules["peft"] is already
    with pytest.raises(ModuleNotFoundError):
        import scipy  # noqa: F401
    import importlib.util

    assert importlib.util.find_spec("transformers") is None  # what diffusers asks


@pytest.mark.parametrize("value", ["0", "false", "No", "off"])
def test_the_environment_variable_turns_it_off(clean_modules, value):
    assert keep_out({ENV: value}) == []
    assert not any(name in sys.modules for name in UNUSED)


def _fake_packages(folder: Path) -> Path:
    """Installed-looking transformers, peft and scipy (a dist-info each, so diffusers would
    import them) whose import appends its name to ``$FAKE_IMPORT_LOG``."""
    for name in UNUSED:
        (folder / name).mkdir(parents=True)
        (folder / name / "__init__.py").write_text(
            "import os\n"
            "with open(os.environ['FAKE_IMPORT_LOG'], 'a') as f:\n"
            "    f.write(__name__ + '\\n')\n"
        )
        info = folder / f"{name}-99.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 99.0\n")
    return folder


@pytest.mark.slow
def test_the_command_samples_without_importing_them(tmp_path):
    run = make_run(tmp_path / "run")
    log = tmp_path / "imported.txt"
    env = script_env()
    fakes = _fake_packages(tmp_path / "fakes")
    env["PYTHONPATH"] = os.pathsep.join([str(fakes), env["PYTHONPATH"]])
    env["FAKE_IMPORT_LOG"] = str(log)
    env.pop(ENV, None)

    def sample(out: str, **extra: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "facediff", "sample", str(run), "-c", "I", "-n", "1"]
        cmd += ["--steps", "2", "--out", str(tmp_path / out), "-q"]
        return subprocess.run(
            cmd, env={**env, **extra}, capture_output=True, text=True, timeout=300
        )

    lean = sample("lean")
    assert lean.returncode == 0, lean.stderr[-3000:]
    assert (tmp_path / "lean" / "I" / "I_0.png").is_file()
    assert not log.exists(), log.read_text()
    # The same command with the switch off does import them (diffusers then fails on the
    # fakes, which is beside the point): the packages were visible, so the test can fail.
    full = sample("full", **{ENV: "0"})
    assert log.exists() and set(log.read_text().split()) <= set(UNUSED), full.stderr[-3000:]
