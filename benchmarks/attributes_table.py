"""Attribute hit rates per category × gender × age decade, with the judge's own accuracy
beside each cell (the UTKFace table of issue 14).

Runs ``facediff evaluate`` with ``--attribute-cells joint`` (every category × gender × age
bucket requested together, ``--per-cell`` samples each) on a run trained on attributes,
then sets beside each cell the judge's held-out accuracy on the real photos of that very
cell (gender head and age head), and prints one Markdown table (also written to
``--markdown``) plus the worst cells::

    facediff prepare ~/UTKFace --out data/utk --attributes utkface      # decades by default
    facediff train data/utk --out runs/utk ...
    python benchmarks/attributes_table.py runs/utk --per-cell 50 --markdown utk-table.md

On a GPU 3 categories × 2 genders × 10 decades × 50 samples is 3000 samples (about a minute
with the default sampler); ``--device cpu --per-cell 8 --steps 10 --no-inception`` runs it
anywhere. The report itself (report.json / report.md, judge first) lands in ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from facediff.config import SampleConfig
from facediff.dataset import PreparedData, load_prepared
from facediff.evaluation import evaluate
from facediff.evaluation.inputs import recorded_data_path
from facediff.evaluation.judge import Judge, load_or_train_judge
from facediff.evaluation.judge_training import JudgeConfig
from facediff.evaluation.pipeline import judge_home
from facediff.evaluation.report import AttributeCell


def heldout_cell_accuracy(judge: Judge, data: PreparedData) -> dict[tuple, dict[str, Any]]:
    """(category code, value of each attribute…) → held-out photos of that cell whose
    labels are all known, and the judge's accuracy on each attribute there."""
    held = judge.heldout_indices
    labels, values = data.labels[held], data.attribute_labels[held]  # type: ignore[index]
    _, _, probs = judge.run_all(data.images[held])
    predicted = torch.stack([probs[a.name].argmax(1) for a in data.attributes], dim=1)
    known = (values >= 0).all(dim=1)
    cells: dict[tuple, dict[str, Any]] = {}
    for i in torch.nonzero(known).flatten().tolist():
        key = (
            data.categories[int(labels[i])].code,
            *(a.values[int(values[i, j])] for j, a in enumerate(data.attributes)),
        )
        cell = cells.setdefault(key, {"n": 0, "correct": [0] * len(data.attributes)})
        cell["n"] += 1
        for j in range(len(data.attributes)):
            cell["correct"][j] += int(predicted[i, j] == values[i, j])
    for cell in cells.values():
        cell["accuracy"] = {
            a.name: c / cell["n"] for a, c in zip(data.attributes, cell.pop("correct"))
        }
    return cells


def table(cells: list[AttributeCell], judged: dict[tuple, dict[str, Any]], names) -> list[str]:
    """Markdown rows: hit rate per requested attribute and all together, judge beside."""
    header = ["category", *names, "samples", *(f"{n} hit" for n in names), "all hit"]
    header += ["held-out photos", *(f"judge {n} acc." for n in names)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for c in cells:
        values = [c.requested[n] for n in names]
        real = judged.get((c.category, *values), {"n": 0, "accuracy": {}})
        acc = [real["accuracy"].get(n) for n in names]
        row = [c.category, *values, str(c.n)]
        row += [f"{c.per_attribute[n].hit_rate:.2f}" for n in names]
        row += [f"{c.hit_rate:.2f}", str(real["n"])]
        row += ["n/a" if a is None else f"{a:.2f}" for a in acc]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="a run (or export) trained with attributes")
    p.add_argument("--data", type=Path, help="its prepared data (default: the recorded one)")
    p.add_argument("--per-cell", type=int, default=50, help="samples per joint cell")
    p.add_argument("--per-group", type=int, default=100, help="samples per category (free)")
    p.add_argument("--steps", type=int, default=SampleConfig().steps, help="sampler steps")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, help="report folder (default: evaluate's)")
    p.add_argument("--markdown", type=Path, help="also write the table here")
    p.add_argument("--worst", type=int, default=5, help="worst cells listed")
    p.add_argument(
        "--no-inception",
        dest="inception",
        action="store_false",
        default=None,
        help="skip FID/KID in the report (Inception is slow on a CPU; the table needs none)",
    )
    args = p.parse_args()

    data_path = args.data or recorded_data_path(args.run)
    data = load_prepared(data_path)
    if not data.attributes:
        raise SystemExit(f"{data_path} has no attribute labels (prepare with --attributes)")
    codes = [c.code for c in data.categories]
    result = evaluate(
        args.run,
        data=data_path,
        per_group=args.per_group,
        mixes=codes,
        per_cell=args.per_cell,
        attribute_cells="joint",
        sample_config=SampleConfig(steps=args.steps),
        device=args.device,
        inception=args.inception,
        out=args.out,
        force=True,
    )
    report = result.summary
    section = report.attributes
    if section is None:
        raise SystemExit(f"{args.run} was trained without attributes")
    device = torch.device("cuda" if torch.cuda.is_available() and args.device != "cpu" else "cpu")
    judge = load_or_train_judge(judge_home(args.run, data), data, JudgeConfig(), device=device)
    judged = heldout_cell_accuracy(judge, data)
    names = list(data.attributes.names)
    acc = report.judge.attribute_accuracy
    lines = [
        f"Attribute hit rates of `{args.run}` ({section.per_cell} samples per cell, "
        f"{args.steps} sampler steps); judge held-out accuracy "
        + ", ".join(f"{n} {acc[n].overall:.3f} (balanced {acc[n].balanced:.3f})" for n in names)
        + f", category {report.judge.heldout_accuracy.overall:.3f}.",
        "",
        *table(section.cells, judged, names),
        "",
        "Worst cells: "
        + "; ".join(
            f"{c.label} {c.hit_rate:.2f}"
            for c in sorted(section.cells, key=lambda c: c.hit_rate)[: args.worst]
        ),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text, encoding="utf-8")
    cells_json = {"|".join(k): v for k, v in judged.items()}
    (result.out / "judge_cells.json").write_text(json.dumps(cells_json, indent=2) + "\n")
    print(f"report: {result.files['report_md']}")


if __name__ == "__main__":
    main()
