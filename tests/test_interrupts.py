"""Ctrl-C and SIGTERM (facediff.cli.interrupts): one that lands inside a module import
waits for the import to finish, then the command exits 130 with one line; SIGTERM ends
every command as Ctrl-C does."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from sampling_helpers import make_run
from train_helpers import blocks_dataset

SIGNALS = ["SIGINT", "SIGTERM"]

# As a terminal starts a command: Ctrl-C raises KeyboardInterrupt (a shell's background
# job, as a CI runner may be, starts with SIGINT ignored) and SIGTERM has its default.
TERMINAL = (
    "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "signal.signal(signal.SIGTERM, signal.SIG_DFL)\n"
)


def _slow_module(folder, signame: str) -> None:
    """A module that sends its process ``signame`` half-way through its body."""
    (folder / "slow_module.py").write_text(
        "import os, signal\n"
        "first_half = True\n"
        f"os.kill(os.getpid(), signal.{signame})\n"
        "second_half = True\n"
    )


def _python(code: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", TERMINAL + textwrap.dedent(code)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("signame", SIGNALS)
def test_a_signal_inside_an_import_waits_for_the_import_then_raises(tmp_path, signame):
    _slow_module(tmp_path, signame)
    result = _python(
        """
        import signal, sys, time
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
        print(signal.getsignal(signal.SIGINT).__name__, signal.getsignal(signal.SIGTERM))
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["complete", "default_int_handler 0"]


def test_a_held_interrupt_is_raised_when_the_block_ends_first(tmp_path):
    _slow_module(tmp_path, "SIGINT")
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


@pytest.mark.parametrize("signame", SIGNALS)
def test_a_signal_outside_imports_is_raised_at_once(tmp_path, signame):
    result = _python(
        f"""
        import os, signal
        from facediff.cli.interrupts import deferred_during_imports
        with deferred_during_imports():
            try:
                os.kill(os.getpid(), signal.{signame})
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


@pytest.mark.parametrize("signame", SIGNALS)
def test_a_signal_while_train_imports_torch_exits_130_in_one_line(tmp_path, signame):
    """The import of the training package is interrupted (as a Ctrl-C ~1 s after
    `facediff train` starts would be): it completes, and the command stops before
    training with `facediff: error: interrupted`; before, such an interrupt could leave
    half-imported modules (tracebacks) or be lost (training ran on), and SIGTERM
    killed the process (exit 143)."""
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
                    os.kill(os.getpid(), signal.{signame})  # lands inside the import
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


def test_sigterm_during_sampling_keeps_the_finished_images_and_exits_130(tmp_path):
    """SIGTERM ends `sample` as Ctrl-C does (exit 130, finished PNGs kept, no temporary
    files); it killed the process, exit 143."""
    run = make_run(tmp_path / "run", steps=(10,))
    out = tmp_path / "samples"
    result = _python(
        f"""
        import os, signal, sys
        import facediff.generation as generation

        real, batches = generation._sample_batch, []
        def second_batch_sigterm(*args, **kwargs):
            batches.append(1)
            if len(batches) == 2:
                os.kill(os.getpid(), signal.SIGTERM)
            return real(*args, **kwargs)

        generation._sample_batch = second_batch_sigterm
        sys.argv = ["facediff", "sample", {str(run)!r}, "--out", {str(out)!r}, "-c", "I",
                    "-n", "6", "--batch-size", "2", "--steps", "2", "--device", "cpu"]
        from facediff.cli import main
        main()
        """,
        tmp_path,
    )
    assert result.returncode == 130, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("facediff: error:")]
    assert line.startswith("facediff: error: interrupted") and "kept the 2 finished" in line
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["I_0.png", "I_1.png"]


def test_forked_children_get_the_default_handlers_back(tmp_path):
    """prepare's decoder processes are forked while the handlers are in place: they keep
    Python's defaults (SIGTERM ends a child at once), as before."""
    result = _python(
        """
        import os, signal
        from facediff.cli.interrupts import deferred_during_imports
        with deferred_during_imports():
            parent = signal.getsignal(signal.SIGTERM).__name__
            pid = os.fork()
            if pid == 0:
                child = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT))
                os._exit(0 if child == (signal.SIG_DFL, signal.default_int_handler) else 3)
            _, status = os.waitpid(pid, 0)
            print(parent, os.waitstatus_to_exitcode(status))
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["_on_signal", "0"]
