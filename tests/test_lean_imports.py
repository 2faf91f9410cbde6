"""The command's lean start (facediff.imports): it keeps out of its process the packages
diffusers imports but facediff never uses (transformers, peft, scipy), and trims what
diffusers imports for a UNet2DModel (its model families, the compiler) without changing what
the command makes or what ``torch.compile`` sees."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch
from sampling_helpers import make_run
from script_helpers import script_env

from facediff.imports import ENV, UNUSED, keep_out
from facediff.model import parameters_on_meta


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


_AS_TYPED = """
import atexit, json, runpy, sys
listed = sys.argv[1]
def modules():  # what the process imported, at its exit
    with open(listed, "w") as f:
        json.dump([k for k, v in sys.modules.items() if type(v).__name__ == "module"], f)
atexit.register(modules)
sys.argv = ["facediff", *sys.argv[2:]]
runpy.run_module("facediff", run_name="__main__", alter_sys=True)
"""


@pytest.mark.slow
def test_the_command_leaves_the_compiler_and_the_model_families_out(tmp_path):
    """``facediff sample`` (eager) imports neither ``torch._dynamo`` nor torchvision nor the
    model families it does not use, and writes the same PNGs as with every import."""
    run = make_run(tmp_path / "run")
    env = script_env()

    def sample(out: str, **extra: str) -> set[str]:
        listed = tmp_path / f"{out}.json"
        cmd = [sys.executable, "-c", _AS_TYPED, str(listed), "sample", str(run), "-c", "I"]
        cmd += ["-n", "2", "--steps", "2", "--out", str(tmp_path / out), "-q"]
        done = subprocess.run(
            cmd, env={**env, **extra}, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return set(json.loads(listed.read_text()))

    left_out = {"torch._dynamo", "torchvision", "diffusers.models.unets.unet_2d_condition"}
    left_out |= {"diffusers.models.transformers.transformer_cosmos"}
    lean = sample("lean")
    assert "diffusers.models.unets.unet_2d" in lean and not lean & left_out
    full = sample("full", **{ENV: "0"})
    assert left_out <= full  # a plain import has them all: the test can fail
    for name in ("I_0.png", "I_1.png"):
        assert (tmp_path / "lean" / "I" / name).read_bytes() == (
            tmp_path / "full" / "I" / name
        ).read_bytes()


_PROBE = """
import sys

import torch
from diffusers.utils.torch_utils import maybe_allow_in_graph

COMPILER_WHILE_IMPORTED = type(sys.modules.get("torch._dynamo")).__name__


@torch.compiler.disable
def opaque(x):
    return x.sin()


@torch.compiler.disable()  # the factory form (diffusers' group offloading)
def opaque_too(x):
    return x.cos()


@maybe_allow_in_graph
class Block(torch.nn.Module):
    pass
"""

_COMPILE = """
import json, sys
from facediff.imports import trim_diffusers
print(trim_diffusers(), file=sys.stderr)
import diffusers
diffusers.__path__.append(sys.argv[1])
import diffusers.facediff_probe as probe
import torch
from diffusers.models.attention_processor import Attention
from facediff.config import preset
from facediff.model import build_unet
import torch._dynamo as dyn  # as torch.compile does: the deferred ones are made
allowed = [dyn.trace_rules.is_callable_allowed(k) for k in (probe.Block, Attention)]
graphs = []
def backend(gm, inputs):
    graphs.append(gm.code)
    return gm.forward
def f(x):
    return probe.opaque_too(probe.opaque(x * 2) + 1) * 3
out = torch.compile(f, backend=backend)(torch.ones(3))
torch.manual_seed(0)
unet = build_unet(preset("tiny", sample_size=16, num_categories=3)).eval()
x, t, c = torch.randn(2, 3, 16, 16), torch.tensor([3, 500]), torch.tensor([0, 1])
with torch.no_grad():
    y = torch.compile(unet, backend=backend, dynamic=False)(x, t, class_labels=c).sample
print(json.dumps({
    "while imported": probe.COMPILER_WHILE_IMPORTED,
    "graphs": graphs,
    "out": out.tolist(),
    "unet": y.double().sum().item(),
    "allowed": allowed,  # as soon as the compiler is imported, before any compiling
}))
"""


@pytest.mark.slow
def test_compiling_under_the_lean_start_sees_what_a_plain_import_gives(tmp_path):
    """A diffusers module imported under the lean start gets the stand-in compiler; once
    the real compiler is imported, ``torch.compile`` sees the same graphs, graph breaks
    (``torch.compiler.disable``) and ``allow_in_graph`` registrations as a plain import."""
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "facediff_probe.py").write_text(textwrap.dedent(_PROBE))
    env = script_env()

    def compiled(**extra: str) -> dict:
        done = subprocess.run(
            [sys.executable, "-c", _COMPILE, str(probe)],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    lean, plain = compiled(), compiled(**{ENV: "0"})
    assert lean.pop("while imported") == "_StandIn"
    assert plain.pop("while imported") == "module"
    assert lean["allowed"] == [True, True]
    assert len(lean["graphs"]) >= 4  # x * 2, + 1, * 3 (breaks at each opaque), the UNet
    assert lean == plain


_SUBMODULE_PROBE = """
from torch._dynamo.utils import counters
import torch._dynamo.config as config
"""

_DEFERRED = """
import importlib, sys
from facediff.imports import trim_diffusers
trim_diffusers()
import diffusers
diffusers.__path__.append(sys.argv[1])
import diffusers.facediff_submodule_probe as probe  # compiler submodules, under the stand-in
dynamo = importlib.import_module("torch._dynamo")
assert sys.modules["torch._dynamo.utils"] is dynamo.utils
counters = dynamo.convert_frame.counters  # what the compiler itself uses: no second copy
assert probe.counters is counters and dynamo.utils.counters is counters
assert probe.config is dynamo.config
import diffusers.models.transformers.transformer_cosmos  # imports torchvision
roi_align = sys.modules["torchvision.ops.roi_align"]
assert roi_align.is_compile_supported is dynamo.utils.is_compile_supported
from diffusers.models.transformers import Transformer2DModel  # the lazy package's names
import diffusers.models.unets as unets
assert unets.UNet2DConditionModel.__name__ == "UNet2DConditionModel"
assert type(unets) is type(sys) and Transformer2DModel.__name__ == "Transformer2DModel"
print("ok")
"""


@pytest.mark.slow
def test_what_the_lean_start_defers_is_there_when_asked_for(tmp_path):
    """A compiler submodule imported while a diffusers module runs is the real compiler's
    (one copy), and the lazily imported packages have all their names."""
    (tmp_path / "facediff_submodule_probe.py").write_text(textwrap.dedent(_SUBMODULE_PROBE))
    done = subprocess.run(
        [sys.executable, "-c", _DEFERRED, str(tmp_path)],
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_building_on_meta_skips_the_init_fills_and_restores_them():
    normal = torch.nn.init.normal_
    real = torch.zeros(3)
    with parameters_on_meta():
        layer = torch.nn.Embedding(4, 2)
        torch.nn.init.normal_(real)
        assert torch.nn.init.normal_(layer.weight) is layer.weight
    assert layer.weight.is_meta and real.abs().sum() > 0  # real tensors are still filled
    assert torch.nn.init.normal_ is normal
