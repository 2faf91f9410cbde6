"""benchmarks/colour_shift.py: unseen photos stay unflagged, tinted copies are flagged."""

from __future__ import annotations

from pathlib import Path

from evaluate_helpers import write_prepared
from script_helpers import run_script

from facediff.synthetic import make_faces

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "colour_shift.py"


def test_prints_the_table_with_unseen_photos_unflagged_and_tints_flagged(tmp_path):
    images, labels = make_faces(80, size=16, seed=0)
    data = write_prepared(tmp_path / "data", images, labels)
    proc = run_script(SCRIPT, data, "--n", "30", "--draws", "5", "--amounts", "0.3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {}
    for line in proc.stdout.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 7 and cells[0] in "IOE" and cells[0]:
            rows[(cells[0], cells[1])] = cells
    assert "I–O:" in proc.stdout
    for code in "IOE":
        assert rows[(code, "unseen photos")][5] == "0.0%"  # never flagged
        for tint in ("green", "blue", "magenta"):
            assert rows[(code, f"30% {tint}")][5] == "100.0%"
