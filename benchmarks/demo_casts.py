"""Colour casts of the CPU demo model, per recipe and sampler (the table of issue 8).

Trains the demo's model (``facediff demo``'s settings: synthetic faces at 32 px, the
``tiny`` preset, batch 16, lr 1e-3, 50 warm-up steps) for ``--steps`` steps on the CPU with
each recipe, then samples ``--per-category`` images per category with each sampler (same
seeds) and prints the colour-cast rate (:mod:`facediff.evaluation.colour`, ellipse fitted on the
prepared data) and the mean colour::

    python benchmarks/demo_casts.py --work /tmp/demo-casts             # ~2 × 600 steps
    python benchmarks/demo_casts.py --work /tmp/dc --recipes default --steps 300
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from facediff.dataset import load_prepared
from facediff.demo import DemoConfig, _train_config
from facediff.evaluation.colour import fit_colour_reference, mean_rgb

RECIPES = {
    "default": {},
    "v0.1": {"prediction_type": "epsilon"},  # facediff 0.1.0's objective
}
SAMPLERS = [  # (sampler, steps, guidance)
    ("dpmsolver++", 25, 3.0),
    ("dpmsolver++", 25, 1.0),
    ("unipc", 25, 3.0),
    ("euler", 25, 3.0),
    ("ddim", 25, 3.0),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--work", required=True)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--per-category", type=int, default=64)
    p.add_argument("--recipes", default="default,v0.1")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from facediff.generation import generate, prepare_denoiser
    from facediff.loading import load_for_inference
    from facediff.mix import parse_mix
    from facediff.preparation import prepare
    from facediff.synthetic import make_demo_data
    from facediff.training import train

    work = Path(args.work)
    demo = DemoConfig(max_steps=args.steps, device="cpu")
    if not (work / "data").is_dir():
        make_demo_data(work / "raw", per_category=demo.per_category, size=demo.size, seed=0)
        prepare(work / "raw", work / "data", size=demo.size)
    data = load_prepared(work / "data")
    reference = fit_colour_reference(data.images)
    rows = []
    for name in args.recipes.split(","):
        cfg = dataclasses.replace(_train_config(demo), **RECIPES[name])
        start = time.perf_counter()
        result = train(work / "data", work / f"run-{name}", cfg)
        seconds = time.perf_counter() - start
        loaded = load_for_inference(work / f"run-{name}")
        den = prepare_denoiser(loaded, device="cpu")
        seeds = list(range(args.per_category))
        for sampler, steps, guidance in SAMPLERS:
            images = torch.cat([
                generate(den, parse_mix(c.code, loaded.categories), seeds,
                         sampler=sampler, steps=steps, guidance=guidance)
                for c in loaded.categories
            ])  # fmt: skip
            row = {
                "recipe": name,
                "train_steps": result.step,
                "train_s": round(seconds, 1),
                "sampler": f"{sampler} {steps}, guidance {guidance:g}",
                "cast_rate": reference.cast_rate(images),
                "mean_rgb": [round(v) for v in mean_rgb(images)],
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\nreal prepared data: mean RGB {[round(v) for v in mean_rgb(data.images)]}")
    print("| recipe | steps | sampler | cast rate | mean RGB |\n|---|---:|---|---:|---|")
    for r in rows:
        rgb = "/".join(map(str, r["mean_rgb"]))
        cast = f"{r['cast_rate']:.1%}"
        print(f"| {r['recipe']} | {r['train_steps']} | {r['sampler']} | {cast} | {rgb} |")
    (work / "demo_casts.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
