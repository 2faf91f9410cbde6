"""Ctrl-C that lands inside a module import (facediff.cli.interrupts): the import
finishes, then the interrupt is raised; the command exits 130 with one line."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from train_helpers import blocks_dataset

# The module sends itself SIGINT half-way through its body, then finishes it.
SLOW_MODULE = """
import os, signal
first_half = True
os.kill(os.getpid(), signal.SIGINT)
second_half = True
"""


def _python(code: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_interrupt_inside_an_import_waits_for_the_import_then_raises(tmp_path):
    (tmp_path / "slow_module.py").write_text(SLOW_MODULE)
    result = _python(
        """
        import sys, time
        sys.path.insert(0, ".")
        from facediff.cli.interrupts import deferred_during_imports
        with deferred_during_imports():
            try:
                import slow_module
                time.sleep(5)  # the held interrupt is raised here, within milliseconds
                print("lost")
            except KeyboardInterrupt:
                module = sys.modules.get("slow_module")
                print("complete" if getattr(module, "second_half", False) else "half")
        print("handler restored:", __import__("signal").getsignal(2).__name__)
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["complete", "handler restored: default_int_handler"]


def test_a_held_interrupt_is_raised_when_the_block_ends_first(tmp_path):
    (tmp_path / "slow_module.py").write_text(SLOW_MODULE)
    result = _python(
        """
        import sys
        sys.path.insert(0, ".")
        from facediff.cli.interrupts import deferred_during_imports
        try:
            with deferred_during_imports():
                import slow_module
        except KeyboardInterrupt:
            print("raised")
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["raised"]


def test_an_interrupt_outside_imports_is_raised_at_once(tmp_path):
    result = _python(
        """
        import os, signal
        from facediff.cli.interrupts import deferred_during_imports
        with deferred_during_imports():
            try:
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(10**6):
                    pass
                print("missed")
            except KeyboardInterrupt:
                print("raised")
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["raised"]


def test_ctrl_c_while_train_imports_torch_exits_130_in_one_line(tmp_path):
    """The import of the training package is interrupted (as a Ctrl-C ~1 s after
    `facediff train` starts would be): it completes, and the command stops before
    training with `facediff: error: interrupted`; before, such an interrupt could leave
    half-imported modules (tracebacks) or be lost (training ran on)."""
    data = blocks_dataset(tmp_path / "data")
    run = tmp_path / "run"
    result = _python(
        f"""
        import os, signal, sys

        class InterruptOnce:
            fired = False
            def find_spec(self, name, path=None, target=None):
                if name == "facediff.training" and not self.fired:
                    self.fired = True
                    os.kill(os.getpid(), signal.SIGINT)  # lands inside the import
                return None

        sys.meta_path.insert(0, InterruptOnce())
        sys.argv = ["facediff", "train", {str(data)!r}, "--out", {str(run)!r},
                    "--preset", "tiny", "--max-steps", "50", "--device", "cpu"]
        from facediff.cli import main
        try:
            main()
        finally:
            print("training imported:", "facediff.training.loop" in sys.modules, flush=True)
        """,
        tmp_path,
    )
    assert result.returncode == 130, result.stderr
    assert result.stderr.strip().splitlines() == ["facediff: error: interrupted"]
    assert "training imported: True" in result.stdout
    assert not run.exists()
