"""How long a checkpoint stops training: written in the foreground against the background.

Builds the training parts of ``--preset`` on the device as ``train`` does
(:func:`facediff.training.setup.build_parts` on a synthetic prepared dataset at
``--size``), takes a few steps so the optimizer holds its moments, then saves ``--repeat``
checkpoints each way into one run folder, as the loop saves them
(:func:`facediff.training.periodic.save`, keeping the default 3):

- foreground, the baseline (every checkpoint before this release; a run's final one): the
  files written, hashed and synced on the loop's thread;
- background (periodic checkpoints now, :mod:`facediff.training.writer`): the state copied
  to host memory on the loop's thread, the files written on the writer thread.

Columns: the seconds the loop's thread was blocked (median), the seconds until the
checkpoint was complete on disk (median), and the blocked time against the foreground's.

    python benchmarks/checkpoint_stall.py                  # GPU: base at 64 px, ~1 min
    python benchmarks/checkpoint_stall.py --device cpu     # base on the CPU, ~2 min
    python benchmarks/checkpoint_stall.py --smoke          # CPU, tiny at 16 px, seconds
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from facediff.batches import IndexStream  # noqa: E402
from facediff.config import TrainConfig  # noqa: E402
from facediff.model import count_parameters  # noqa: E402
from facediff.synthetic import write_synthetic_prepared  # noqa: E402
from facediff.training.periodic import save  # noqa: E402
from facediff.training.setup import build_parts, data_to_device, make_setup  # noqa: E402
from facediff.training.state import Loop  # noqa: E402
from facediff.training.step import advance  # noqa: E402

COLUMNS = ("checkpoint", "blocked s", "complete s", "blocked vs foreground")


def measure(args, work: Path) -> list[dict]:
    data = write_synthetic_prepared(work / "data", per_category=4, size=args.size)
    cfg = TrainConfig(
        preset=args.preset, batch_size=4, device=args.device, compile=False, cuda_graphs=False
    )
    setup, _, _ = make_setup(data, work / "run", cfg, None)
    setup.run_dir.mkdir(parents=True)
    data_to_device(setup)
    parts = build_parts(setup)
    loop = Loop(0, 0, 10**9, 0.0)
    stream = IndexStream(setup.data.labels, seed=cfg.seed, balance=cfg.balance, device=setup.device)
    for _ in range(2):  # the optimizer's moments exist from the first step
        advance(loop, parts, setup, stream)
    mb = sum(t.numel() * t.element_size() for t in parts.unet.state_dict().values()) / 2**20
    print(
        f"device: {setup.device}; {args.preset} at {args.size} px, "
        f"{count_parameters(parts.unet) / 1e6:.1f}M parameters ({mb:.0f} MiB of weights; "
        "a checkpoint holds them, their EMA and two optimizer moments)",
        flush=True,
    )
    rows = []
    for label, background in (("foreground (baseline)", False), ("background", True)):
        blocked, complete = [], []
        for _ in range(args.repeat):
            loop.step += 1  # a new step each time: save() skips a step already saved
            start = time.perf_counter()
            save(loop, parts, setup, None, background=background)
            blocked.append(time.perf_counter() - start)
            loop.writer.wait()
            complete.append(time.perf_counter() - start)
        rows.append(
            {
                "checkpoint": label,
                "blocked s": statistics.median(blocked),
                "complete s": statistics.median(complete),
            }
        )
    for row in rows:
        row["blocked vs foreground"] = row["blocked s"] / rows[0]["blocked s"]
    return rows


def table(rows: list[dict]) -> str:
    def fmt(v) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="base")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--repeat", type=int, default=3, help="checkpoints saved each way")
    p.add_argument("--json", help="also write the rows here")
    p.add_argument("--smoke", action="store_true", help="CPU, tiny preset at 16 px")
    args = p.parse_args()
    if args.smoke:
        args.preset, args.size, args.device, args.repeat = "tiny", 16, "cpu", 2
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        rows = measure(args, Path(tmp))
    print()
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
