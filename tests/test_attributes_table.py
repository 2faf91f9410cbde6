"""benchmarks/attributes_table.py on a tiny attribute run: the UTKFace table's machinery
(joint cells, hit rates, the judge's held-out accuracy per cell) end to end on the CPU."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from evaluate_helpers import attribute_faces
from sampling_helpers import TINY, TINY_ATTRIBUTES, make_attribute_run
from train_helpers import write_dataset

from facediff.dataset import load_prepared
from facediff.evaluation.judge import load_or_train_judge
from facediff.evaluation.judge_training import JudgeConfig
from facediff.evaluation.pipeline import judge_home

ROOT = Path(__file__).resolve().parents[1]


def test_table_has_a_row_per_joint_cell_with_the_judge_beside_it(tmp_path, monkeypatch, capsys):
    images, labels, values = attribute_faces(16, seed=0, size=TINY.sample_size)
    values = values[:, [1, 0]]  # attribute_faces gives (age, gender); the run has (gender, age)
    data_path = write_dataset(
        tmp_path / "data", images, labels, attributes=TINY_ATTRIBUTES, attribute_labels=values
    )
    data = load_prepared(data_path)
    run = make_attribute_run(tmp_path / "run")
    # A small judge, cached where the script (and evaluate) will look for it.
    load_or_train_judge(
        judge_home(run, data), data, JudgeConfig(width=8, epochs=2), device=torch.device("cpu")
    )
    md, out = tmp_path / "table.md", tmp_path / "report"
    argv = [str(run), "--data", str(data_path), "--per-cell", "2", "--per-group", "2"]
    argv += ["--steps", "2", "--device", "cpu", "--no-inception", "--markdown", str(md)]
    monkeypatch.setattr(sys, "argv", ["attributes_table.py", *argv, "--out", str(out)])
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import attributes_table

    attributes_table.main()
    printed = capsys.readouterr().out
    text = md.read_text()
    assert text in printed
    header = "| category | gender | age | samples | gender hit | age hit | all hit |"
    assert header in text and "judge gender acc. | judge age acc. |" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + 3 * 2 * 3  # header, then category × gender × age bucket
    report = json.loads((out / "report.json").read_text())
    cells = report["attributes"]["cells"]
    assert len(cells) == 18 and all(c["n"] == 2 for c in cells)
    first = next(c for c in cells if c["category"] == "I")
    assert f"| I | {first['requested']['gender']} | {first['requested']['age']} | 2 |" in text
    assert set(report["realism"]) == {"judge"}  # --no-inception: no Inception features
    judged = json.loads((out / "judge_cells.json").read_text())
    assert judged and all(0 <= v["accuracy"]["gender"] <= 1 for v in judged.values())
    assert "Worst cells: " in text
