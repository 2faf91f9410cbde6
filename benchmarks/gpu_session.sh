#!/usr/bin/env bash
# Issue 13's GPU measurements as one device call, and what that call needs carried.
#
#   bash benchmarks/gpu_session.sh carry            # here: .gpu/ (photos) and .whl/ (wheels)
#   PART=sweep bash benchmarks/gpu_session.sh run   # there, with carry [".gpu", ".whl"]
#
# `carry` writes .gpu/utk64.zip (../shared/data/utkface as 64x64 JPEGs, quality 95, names
# kept: about 40 MB, under the 64 MiB a call may carry) and .whl/ (diffusers and the
# packages it needs that the GPU image lacks, for Python 3.12), and lists both folders in
# .git/info/exclude. `run` installs them, prepares the photos, and runs PART (results and
# log.txt under $OUT, at most 8 files):
#
#   sweep     train `base` 3,000 steps on 90% of the photos (time_to_fid.py's split); the
#             FID steps sweep: DPM-Solver++ with time and log-SNR spacing at 10/12/15/20
#             steps beside the default recipe and the default on other seeds, 1,000
#             samples each, packed with sample_pack.py; then the ODE error of both
#             spacings by steps (solver_error.py).
#             Score here: python benchmarks/sample_pack.py unpack OUT/sweep W/steps-sweep;
#             python benchmarks/time_to_fid.py score W/steps-sweep --heldout-from DATA64
#   guidance  as sweep, with DPM-Solver++ at 12 and 15 log-SNR steps at guidance 1.5, 2 and
#             2.5 beside the default recipe (guidance 3, 25 time-spaced steps) and the default
#             on other seeds: does a lower scale let 12 log-SNR steps match the default's FID?
#             With STEPS=1500 the samples were done 280 s into the call, but packing them was
#             not: give it a call of its own with 600 s (sweep took 484 s with 3,000 steps).
#   deepcache the FID of deep-feature caching (facediff sample --deep-cache): as sweep, with
#             the default recipe (DPM-Solver++ 25 steps, guidance 3, --deep-cache 3) beside
#             the exact model (--deep-cache 1), --deep-cache 2 and the default on other seeds:
#             about 6 minutes (run on an H200 on 2026-11-28: docs/speed.md).
#   deepcache_speed  the steady compiled rate of the default recipe against eager, and with
#             --deep-cache 1 (the exact model) and 2: up to 9 minutes.
#   speed     checkpoint_stall.py (how long a checkpoint blocks training, background against
#             foreground: under a minute) and sample_throughput.py --quick (the default's
#             images/s and first image, cold and warm, against eager).
#   train_speed  train_default.py: the eager baseline (300 steps) and the default (3,200
#             steps: compiled cold and graphed, a checkpoint written in the background every
#             1,000 steps), each `facediff train` as a user runs it: about 5 minutes.
#   knobs_sample  where sampling's device time goes (profile_kernels.py: the default at
#             batch 256, by kernel kind), then the steady compiled rate as it is and under
#             max-autotune with coordinate-descent tuning (what compile's
#             "max-autotune-no-cudagraphs" mode sets), each against eager in its own process
#             (the plain compile on the cache the profile left, max-autotune cold): 5 to 7
#             minutes.
#   knobs_train   the default training step's profile (batch 32, compiled, graphed), then
#             the images/s batch 48 and 64 reach, profiled the same way (each compiles cold,
#             about 110 s on an H200): about 8 minutes.
#   autotune_train  the batch-32 training profile under max-autotune with coordinate-descent
#             tuning, compiled cold: up to 7 minutes.
#   batch     quality per GPU-minute of the default batch 32 against batch ARM (48; the way
#             to 1,500 training images/s without a faster step): time_to_fid.py trains each for
#             BUDGET (220) wall seconds, start-up and compilation included, and samples 1,000
#             with the defaults, packed; rows.json (in pack.json) keeps each run's steady
#             images/s, its slowest window (the background checkpoints every 1,000 steps show
#             there) and whether it compiled and graphed. Score here:
#             python benchmarks/sample_pack.py unpack OUT/batch W/ttf-batch;
#             python benchmarks/time_to_fid.py score W/ttf-batch --heldout-from DATA64
#   first     the first image with today's defaults (deep cache 3): start_up.py's in-process
#             row and `facediff sample RUN` as typed, best of 2, on PART=batch's trained run
#             if this machine still has it, else on `base` with random weights: about 2
#             minutes, a second call after batch if the budget allows.
set -euo pipefail
cd "$(dirname "$0")/.."
# A dry run on the CPU: STEPS=2 SAMPLES=6 SEEDS=1 REFERENCE=20 TRAIN_FLAGS="--preset tiny" \
#   OUT=/tmp/o PART=sweep bash benchmarks/gpu_session.sh run
STEPS=${STEPS:-3000} SAMPLES=${SAMPLES:-1000} SEEDS=${SEEDS:-16} REFERENCE=${REFERENCE:-300}
TRAIN_FLAGS=${TRAIN_FLAGS:-} BUDGET=${BUDGET:-220} ARM=${ARM:-48}
# PART=knobs on the CPU: SAMPLE_KNOB_FLAGS="--preset tiny --size 16 --batch-size 4 --device cpu"
#   TRAIN_KNOB_FLAGS="--preset tiny --batch-size 4 --device cpu --warmup 1 --steps 2"
SAMPLE_KNOB_FLAGS=${SAMPLE_KNOB_FLAGS:-} TRAIN_KNOB_FLAGS=${TRAIN_KNOB_FLAGS:-}

carry() {
    for d in /.gpu/ /.whl/; do
        grep -qxF "$d" .git/info/exclude 2>/dev/null || echo "$d" >>.git/info/exclude
    done
    mkdir -p .gpu .whl
    python3 - <<'EOF'
import io, zipfile
from pathlib import Path
from PIL import Image
src = Path("../shared/data/utkface")
files = sorted(p for p in src.iterdir() if p.is_file())
with zipfile.ZipFile(".gpu/utk64.zip", "w", zipfile.ZIP_STORED) as z:
    for p in files:
        with Image.open(p) as im:
            buf = io.BytesIO()
            im.convert("RGB").resize((64, 64), Image.Resampling.BICUBIC).save(buf, "JPEG", quality=95)
        z.writestr(p.name, buf.getvalue())
print(f".gpu/utk64.zip: {len(files)} photos, {Path('.gpu/utk64.zip').stat().st_size / 2**20:.1f} MiB")
EOF
    # diffusers and what it needs beyond the GPU image (its zipp may be older than 3.20),
    # at the versions installed here
    pins=$(python3 -c "from importlib.metadata import version as v
print(' '.join(f'{n}=={v(n)}' for n in ('diffusers', 'importlib_metadata', 'zipp', 'lazy-importer')))")
    rm -f .whl/*.whl
    # shellcheck disable=SC2086  # pins is a list of requirements
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux2014_x86_64 --platform any -d .whl $pins
    ls -l .whl
}

setup() {
    export PYTHONUNBUFFERED=1
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD
    python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null
    mkdir -p /tmp/raw
    python3 -c "import zipfile; zipfile.ZipFile('.gpu/utk64.zip').extractall('/tmp/raw')"
    [ -d /tmp/utk64 ] || python3 -m facediff prepare /tmp/raw --out /tmp/utk64 >/dev/null
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || echo "no GPU"
}

base_run() {  # time_to_fid.py's split, then a 3,000-step default run on it
    python3 - <<'EOF'
import sys
from pathlib import Path
sys.path.insert(0, "benchmarks")
from time_to_fid import prepare_work
print(prepare_work(Path("/tmp/utk64"), Path("/tmp/ttf"), 0.1))
EOF
    # shellcheck disable=SC2086  # TRAIN_FLAGS is a list of flags
    python3 -m facediff train /tmp/ttf/data --out /tmp/ttf/runs/default --max-steps "$STEPS" \
        --log-every 500 --checkpoint-every "$STEPS" $TRAIN_FLAGS
}

sweep() {  # train base_run, sweep DPM-Solver++ with "$@", pack into $1 files (pack.json included)
    local files=$1
    shift
    base_run
    echo "[${SECONDS}s] trained"
    python3 benchmarks/sample_throughput.py --sweep /tmp/ttf --sweep-only --sweep-samples "$SAMPLES" \
        --batch-size 250 --sweep-samplers dpmsolver++ "$@"
    python3 benchmarks/sample_pack.py pack /tmp/ttf/steps-sweep "$OUT/sweep" --files "$files"
    echo "[${SECONDS}s] swept"
}

part_sweep() {  # the samples first: they matter most if the call runs out of time
    # 10 sample sets: 5 grid files and pack.json, beside log.txt and ode.json
    sweep 6 --sweep-spacings time,logsnr --sweep-steps 10,12,15,20
    python3 benchmarks/solver_error.py /tmp/ttf/runs/default --per-category "$SEEDS" \
        --reference-steps "$REFERENCE" --steps 10,12,15,20,25 --samplers dpmsolver++ --json "$OUT/ode.json"
    echo "[${SECONDS}s] done"
}

part_guidance() {  # 8 sample sets: 4 grid files and pack.json, beside log.txt
    sweep 5 --sweep-spacings logsnr --sweep-steps 12,15 --sweep-guidance 1.5,2,2.5
}

part_deepcache() {  # 4 sample sets: 2 grid files and pack.json, beside log.txt
    sweep 3 --sweep-steps 25 --sweep-deep-cache 1,2
}

part_deepcache_speed() {  # the default's steady rate, compiled, with and without the cache
    # shellcheck disable=SC2086  # SAMPLE_KNOB_FLAGS is a list of flags
    XDG_CACHE_HOME=/tmp/dc timeout 540 python3 benchmarks/sample_throughput.py --steady-only \
        --variants compile --batches 2 --steady-deep-cache 1,2 $SAMPLE_KNOB_FLAGS \
        --json "$OUT/deepcache-speed.json" || echo "exit $?"
    echo "[${SECONDS}s] done"
}

part_speed() {
    python3 benchmarks/checkpoint_stall.py --json "$OUT/checkpoint.json" || echo "exit $?"
    python3 benchmarks/sample_throughput.py --quick --json "$OUT/sample.json"
}

part_train_speed() {  # 3,200 steps of batch 32 plan 102,400 images: the default compiles cold
    python3 benchmarks/train_default.py /tmp/utk64 --rows eager,cold --steps 3200 \
        --baseline-steps 300 --json "$OUT/train.json"
}

part_batch() {
    python3 benchmarks/time_to_fid.py run /tmp/utk64 --work /tmp/ttfb --budgets "$BUDGET" \
        --recipes "default,b$ARM" --recipe "b$ARM=--batch-size $ARM" --samples "$SAMPLES" \
        --sample-batch 250
    echo "[${SECONDS}s] trained and sampled"
    python3 benchmarks/sample_pack.py pack /tmp/ttfb "$OUT/batch" --files 4
    echo "[${SECONDS}s] done"
}

part_first() {  # a trained run if PART=batch left one (same warm machine), else random weights
    local run=/tmp/ttfb/runs/default
    [ -d "$run/checkpoints" ] || run=$(python3 -c "import sys; sys.path.insert(0, 'benchmarks')
from pathlib import Path; from sample_throughput import random_run
print(random_run(Path('/tmp/first/run'), 'base', 64))")
    timeout 300 python3 benchmarks/start_up.py "$run" --rows default,cli --repeat 2 \
        --json "$OUT/first.json" || echo "exit $?"
    echo "[${SECONDS}s] done"
}

part_knobs_sample() {  # an autotune row has a time limit: if it runs out, only it is lost
    # shellcheck disable=SC2086  # the *_KNOB_FLAGS are lists of flags
    # knob 0 (no knob) then compiles with the cache this profile leaves; a failure loses one row
    XDG_CACHE_HOME=/tmp/knob0 python3 benchmarks/profile_kernels.py sample $SAMPLE_KNOB_FLAGS \
        --json "$OUT/prof-sample.json" || echo "profile: exit $?"
    echo "[${SECONDS}s] profiled sampling"
    local k=0 knob
    for knob in "" "TORCHINDUCTOR_MAX_AUTOTUNE=1 TORCHINDUCTOR_COORDINATE_DESCENT_TUNING=1"; do
        echo "knob: ${knob:-none}"
        # shellcheck disable=SC2086  # knob is a list of assignments
        env $knob XDG_CACHE_HOME="/tmp/knob$k" timeout 240 python3 benchmarks/sample_throughput.py \
            --steady-only --variants compile --batches 2 $SAMPLE_KNOB_FLAGS \
            --json "$OUT/knob-sample$k.json" || echo "knob ${knob:-none}: exit $?"
        echo "[${SECONDS}s] knob ${knob:-none} done"
        k=$((k + 1))
    done
}

part_knobs_train() {
    # shellcheck disable=SC2086
    python3 benchmarks/profile_kernels.py train /tmp/utk64 $TRAIN_KNOB_FLAGS \
        --json "$OUT/prof-train.json" || echo "profile: exit $?"
    echo "[${SECONDS}s] profiled training"
    local b
    for b in 48 64; do  # the images/s larger batches reach (compiled, graphed): PART=batch's arm
        # shellcheck disable=SC2086
        timeout 150 python3 benchmarks/profile_kernels.py train /tmp/utk64 $TRAIN_KNOB_FLAGS \
            --batch-size "$b" --json "$OUT/prof-train-b$b.json" || echo "batch $b: exit $?"
        echo "[${SECONDS}s] profiled training at batch $b"
    done
    echo "[${SECONDS}s] done"
}

part_autotune_train() {
    echo "knob: TORCHINDUCTOR_MAX_AUTOTUNE=1 TORCHINDUCTOR_COORDINATE_DESCENT_TUNING=1"
    # shellcheck disable=SC2086
    env TORCHINDUCTOR_MAX_AUTOTUNE=1 TORCHINDUCTOR_COORDINATE_DESCENT_TUNING=1 \
        XDG_CACHE_HOME=/tmp/knobt timeout 400 python3 benchmarks/profile_kernels.py train \
        /tmp/utk64 $TRAIN_KNOB_FLAGS --json "$OUT/prof-train-autotune.json" || echo "exit $?"
    echo "[${SECONDS}s] done"
}

case "${1:-}" in
carry) carry ;;
run)
    : "${OUT:?run it on the device machine, where OUT is set}"
    { setup; "part_${PART:?set PART=sweep, guidance, deepcache, deepcache_speed, speed, train_speed, knobs_sample, knobs_train, autotune_train, batch or first}"; } 2>&1 | tee "$OUT/log.txt"
    ;;
*)
    echo "usage: bash benchmarks/gpu_session.sh carry | PART=NAME bash benchmarks/gpu_session.sh run" >&2
    exit 2
    ;;
esac
