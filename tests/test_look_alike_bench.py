"""benchmarks/look_alike.py: unseen photos are not warned about, repeated faces are."""

from __future__ import annotations

from pathlib import Path

from evaluate_helpers import write_prepared
from script_helpers import run_script

from facediff.synthetic import make_faces

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "look_alike.py"


def test_prints_the_table_with_unseen_photos_unwarned_and_repeats_warned(tmp_path):
    images, labels = make_faces(80, size=16, seed=0)
    data = write_prepared(tmp_path / "data", images, labels)
    proc = run_script(SCRIPT, data, "--n", "30", "--draws", "3", "--repeats", "0.5")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {}
    for line in proc.stdout.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 5 and cells[0] in ("I", "O", "E"):
            rows[(cells[0], cells[1])] = cells
    for code in "IOE":
        assert rows[(code, "unseen photos")][4] == "0%"
        assert rows[(code, "50% repeated")][4] == "100%"
        assert float(rows[(code, "50% repeated")][2]) == 1.0  # every face has its twin
