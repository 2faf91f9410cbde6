"""The command line as a whole: start-up cost, exit codes, examples, shell completion."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from facediff.cli import app

_TIME_IMPORT = "import time; t = time.perf_counter(); import {}; print(time.perf_counter() - t)"


def _import_seconds(module: str) -> float:
    """Seconds to import ``module`` in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", _TIME_IMPORT.format(module)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout)


def test_cli_import_costs_little_more_than_typer():
    # The CLI (typer plus all command modules) may cost at most 3x typer alone (measured:
    # about 1.8x); importing torch and diffusers at start-up made it ~300x. Best of five,
    # interleaved, because the machine may be busy.
    cli, bare = [], []
    for _ in range(5):
        cli.append(_import_seconds("facediff.cli"))
        bare.append(_import_seconds("typer"))
    ratio = min(cli) / min(bare)
    assert ratio < 3.0, (ratio, cli, bare)


def test_help_and_version_load_no_heavy_library():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from facediff.cli import app\n"
        "r = CliRunner()\n"
        "cmds = [c.name for c in app.registered_commands]\n"
        "codes = [r.invoke(app, [c, '--help']).exit_code for c in cmds]\n"
        "codes.append(r.invoke(app, ['--version']).exit_code)\n"
        "heavy = ('torch', 'diffusers', 'torchvision', 'numpy', 'PIL', 'matplotlib')\n"
        "print(codes, sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("[]"), out.stdout + out.stderr
    assert "[0, 0, 0, 0, 0, 0, 0, 0, 0]" in out.stdout


def _commands() -> list[str]:
    return [c.name for c in app.registered_commands]


@pytest.mark.parametrize("command", _commands())
def test_every_help_has_examples(command):
    r = CliRunner().invoke(app, [command, "--help"])
    assert r.exit_code == 0, r.output
    assert "Examples:" in r.output
    after = r.output.split("Examples:", 1)[1]
    examples = [ln.strip() for ln in after.splitlines() if ln.strip().startswith("facediff ")]
    assert examples, r.output
    # Each example is on its own line, not re-wrapped into a paragraph.
    assert all(ln.split()[1] == command for ln in examples), examples


def _errors(r) -> list[str]:
    return [ln for ln in r.output.splitlines() if ln.startswith("facediff: error:")]


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--preset", "huge"],
        ["train", "--batch-size", "0"],
        ["train", "--epochs", "1", "--max-steps", "2"],
        ["train", "--device", "tpu"],
        ["train", "--no-such-option"],
        ["sample", "--sampler", "heun"],
        ["grid", "--strip-steps", "1", "--from-samples", "nowhere"],
        ["prepare", "raw", "--size", "3"],
        ["prepare", "raw", "-c", "no-equals-sign"],
        ["evaluate", "-n", "1"],
        ["nonsense"],
    ],
)
def test_usage_errors_exit_2(tmp_path, args):
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2, r.output
    assert len(_errors(r)) == 1 and "Traceback" not in r.output, r.output


def test_runtime_failure_exits_1(tmp_path):
    r = CliRunner().invoke(app, ["train", str(tmp_path / "missing"), "--out", str(tmp_path / "r")])
    assert r.exit_code == 1, r.output
    assert len(_errors(r)) == 1 and "not found" in _errors(r)[0]


def test_interrupt_exits_130(tmp_path, monkeypatch):
    import facediff.synthetic

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(facediff.synthetic, "make_demo_data", interrupted)
    r = CliRunner().invoke(app, ["demo-data", str(tmp_path / "raw")])
    assert r.exit_code == 130, r.output
    assert _errors(r) == ["facediff: error: interrupted"]


def test_shell_completion_is_on(monkeypatch):
    # Typer detects the shell from the parent processes, which a detached run lacks.
    monkeypatch.setattr(typer.completion, "_get_shell_name", lambda: "bash")
    r = CliRunner().invoke(app, ["--show-completion"])
    assert r.exit_code == 0, r.output
    assert "_FACEDIFF_COMPLETE" in r.output.upper()
    assert isinstance(typer.main.get_command(app), typer.core.TyperGroup)
