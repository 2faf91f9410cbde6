"""benchmarks/sample_throughput.py --smoke: the table, the CPU default path and the sweep."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from script_helpers import script_env

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "sample_throughput.py"
COLUMNS = (
    "row | flags | cache | compiled | first image s | wall s | images/s | TFLOP/s | vs eager "
    "| max |Δ| | mean |Δ| | note"
)


@pytest.mark.slow
def test_smoke_mode_reports_the_default_path_against_eager_and_writes_the_sweep(tmp_path):
    env = script_env(tmp_path / "xdg")
    out = tmp_path / "rows.json"
    cmd = [sys.executable, str(SCRIPT), "--smoke", "--work", str(tmp_path / "w")]
    proc = subprocess.run(
        [*cmd, "--json", str(out), "--steady-steps", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"| {COLUMNS} |" in proc.stdout
    result = json.loads(out.read_text())
    rows = {(r["row"], r["cache"]): r for r in result["rows"]}
    assert set(rows) == {
        ("sample RUN -n 1 (smoke)", "cold"),
        ("sample RUN -n 1 (smoke)", "warm"),
        ("eager baseline", "-"),
        ("default (auto)", "cold"),
        ("steady: eager", "-"),
        ("steady: eager, 2 steps", "-"),  # --steady-steps: the same model at fewer steps
    }
    for r in result["rows"]:
        assert r["images/s"] > 0 and r["TFLOP/s"] > 0 and r["wall s"] > 0
        assert r["compiled"] == "no"  # the CPU default never compiles
    for key in (("sample RUN -n 1 (smoke)", "cold"), ("eager baseline", "-")):
        assert 0 < rows[key]["first image s"] <= rows[key]["wall s"]
    assert rows[("sample RUN -n 1 (smoke)", "cold")]["images"] == 7  # 3 categories + 4 mixes
    eager, default = rows[("eager baseline", "-")], rows[("default (auto)", "cold")]
    assert eager["vs eager"] == 1.0 and eager["images"] == default["images"] == 4
    # On the CPU the default path is the eager path: the very same pixels.
    assert default["max |Δ|"] == 0.0 and default["mean |Δ|"] == 0.0
    # 2 steps instead of 25: far fewer evaluations, so clearly faster than the default.
    fewer = rows[("steady: eager, 2 steps", "-")]
    assert fewer["images/s"] > 3 * rows[("steady: eager", "-")]["images/s"]
    # The steps sweep: a folder `time_to_fid.py score` reads (rows, samples, data, split).
    sweep = tmp_path / "w" / "ttf" / "steps-sweep"
    recipes = [r["recipe"] for r in result["sweep"]]
    offset = max(result["sweep"][0]["per_category"])
    assert recipes == [  # with the default's deep cache
        *(
            f"{s} {n} steps, deep cache 3"
            for s in ("dpmsolver++", "unipc")
            for n in (10, 15, 20, 25)
        ),
        f"dpmsolver++ 25 steps, deep cache 3, seeds from {offset}",  # the default, other seeds
    ]
    assert json.loads((sweep / "rows.json").read_text()) == result["sweep"]
    for name in ("data", "heldout.safetensors", "split.json"):
        assert (sweep / name).exists()
    for r in result["sweep"]:
        tensors = load_file(str(sweep / r["samples"]))
        assert tensors["images"].shape[0] == sum(r["per_category"]) == 8
        assert tensors["labels"].tolist() == sorted(tensors["labels"].tolist())
    same, other = (load_file(str(sweep / r["samples"]))["images"] for r in result["sweep"][3::5])
    assert not torch.equal(same, other)  # other seeds, other faces


@pytest.mark.slow
def test_sweep_only_skips_the_timing_sections(tmp_path):
    env = script_env(tmp_path / "xdg")
    out = tmp_path / "rows.json"
    cmd = [sys.executable, str(SCRIPT), "--smoke", "--sweep-only", "--work", str(tmp_path / "w")]
    chosen = ["--sweep-samplers", "ddim", "--sweep-steps", "2", "--sweep-interval", "0.28,5.42",
              "--sweep-guidance", "1,3", "--sweep-deep-cache", "1"]  # fmt: skip
    proc = subprocess.run(
        [*cmd, *chosen, "--json", str(out)], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["rows"] == [] and f"| {COLUMNS} |" not in proc.stdout
    recipes = [r["recipe"] for r in result["sweep"]]
    assert recipes[:5] == [
        "ddim 2 steps, guidance 1, deep cache 3",
        "ddim 2 steps, deep cache 3",  # guidance 3 and the deep cache: the default's
        "dpmsolver++ 25 steps, deep cache 3",  # the default recipe, though not asked for
        "dpmsolver++ 25 steps, guided σ in (0.28, 5.42], deep cache 3",
        "dpmsolver++ 25 steps",  # --sweep-deep-cache 1: the exact model
    ]
    assert recipes[5].startswith("dpmsolver++ 25 steps, deep cache 3, seeds from ")
    assert len(recipes) == 6
    unguided, guided, default, exact = (
        load_file(str(tmp_path / "w" / "ttf" / "steps-sweep" / r["samples"]))["images"]
        for r in (result["sweep"][i] for i in (0, 1, 2, 4))
    )
    assert not torch.equal(unguided, guided)  # the scale reaches the sampler
    assert not torch.equal(default, exact)  # so does the deep cache

    # What a GPU machine sends back (sample_pack.py: lossless WebP grids and pack.json, at
    # most 8 files), unpacked here, scores against pristine copies of the photos, split the
    # same way.
    sweep, packed, back = (
        tmp_path / "w" / "ttf" / "steps-sweep",
        tmp_path / "out",
        tmp_path / "back",
    )
    pack = [sys.executable, str(ROOT / "benchmarks" / "sample_pack.py")]
    for action, src, dst in (("pack", sweep, packed), ("unpack", packed, back)):
        done = subprocess.run([*pack, action, str(src), str(dst)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
    sent = sorted(f.name for f in packed.iterdir())
    assert len(sent) <= 8 and sent == sorted(["pack.json", *(f"{n[:-12]}.webp".replace("+", "p")
        for n in (r["samples"] for r in result["sweep"]))])  # fmt: skip
    # names the device machine returns: letters, digits, '.', '_' and '-' alone
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", name) for name in sent), sent
    for name in ("rows.json", "split.json"):
        assert json.loads((back / name).read_text()) == json.loads((sweep / name).read_text())
    for r in result["sweep"]:
        original, carried = (
            load_file(str(sweep / r["samples"])),
            load_file(str(back / r["samples"])),
        )
        assert torch.equal(original["images"], carried["images"])  # lossless, bit for bit
        assert torch.equal(original["labels"], carried["labels"])
    scored = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "time_to_fid.py"), "score", str(back),
         "--heldout-from", str(tmp_path / "w" / "prepared")],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert scored.returncode == 0, scored.stderr[-3000:]
    results = json.loads((back / "results.json").read_text())
    assert [r["recipe"] for r in results["rows"]] == recipes
    assert all(0 <= r["cast_rate"] <= 1 for r in results["rows"])
    assert results["floor"]["recipe"].startswith("real vs real")


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--sweep-samplers", "dpm,ddim"),
        ("--sweep-steps", "10,x"),
        ("--sweep-steps", "0"),
        ("--sweep-spacings", "time,sigma"),
        ("--sweep-interval", "3,1"),
        ("--sweep-guidance", "2,x"),
        ("--sweep-deep-cache", "0"),
        ("--sweep-deep-cache", "2.5"),
    ],
)
def test_bad_sweep_settings_are_refused_naming_the_option(flag, value):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import sample_throughput as st

    # sweep_settings' arguments, in order, each option's good value
    given = {"--sweep-samplers": "dpmsolver++", "--sweep-steps": "10", "--sweep-interval": None,
             "--sweep-spacings": "time", "--sweep-guidance": "",
             "--sweep-deep-cache": ""}  # fmt: skip
    given[flag] = [value] if flag == "--sweep-interval" else value
    with pytest.raises(ValueError, match=f"^{re.escape(flag)}: expected .*{re.escape(value)}"):
        st.sweep_settings(*given.values())


def test_a_bad_sweep_setting_stops_the_script_before_any_work(tmp_path):
    """The command line's side of the test above: one line, exit 2, nothing written."""
    env = script_env()
    cmd = [sys.executable, str(SCRIPT), "--smoke", "--sweep-only", "--work", str(tmp_path / "w")]
    proc = subprocess.run(
        [*cmd, "--sweep-steps", "10,x"], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 2
    assert "--sweep-steps: expected" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "w").exists()
    bad = subprocess.run(
        [sys.executable, str(SCRIPT), "--sweep-only"], capture_output=True, text=True, env=env
    )
    assert bad.returncode == 2 and "--sweep-only needs --sweep WORK" in bad.stderr


@pytest.mark.parametrize("quick", [False, True])
def test_quick_keeps_the_rows_the_targets_need(tmp_path, quick):
    """On a GPU, --quick runs the no-flags process cold and warm, the eager baseline,
    --compile cold (which warms the cache) and the default warm; steady eager and compiled."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import sample_throughput as st

    args = argparse.Namespace(
        category="O",
        n=512,
        batch_size=256,
        smoke=False,
        quick=quick,
        compile_on_cpu=False,
        variants=[],
    )
    args.device_obj = torch.device("cuda")
    plan = [(row, state, setting) for row, _, _, state, setting in st.process_plan(args, tmp_path)]
    steady = [v[0] for v in st.steady_variants(args, args.device_obj)]
    targets = [
        ("sample RUN (no flags)", "cold", None),
        ("sample RUN (no flags)", "warm", None),
        ("eager baseline", "-", False),
        ("--compile", "cold", True),
        ("default (auto)", "warm", None),
    ]
    if quick:
        assert plan == targets
        assert steady == ["eager", "torch.compile"]
    else:
        assert set(targets) < set(plan) and len(plan) == 7
        warms, warmed = ("--compile", "cold", True), ("default (auto)", "warm", None)
        assert plan.index(warms) < plan.index(warmed)
        assert steady == [
            "eager",
            "eager fp32 (yardstick)",
            "eager + CUDA graphs",
            "torch.compile",
            "torch.compile + CUDA graphs",
        ]
    args.variants = ["graphs"]  # --variants graphs: eager first, as the reference
    assert [v[0] for v in st.steady_variants(args, args.device_obj)] == [
        "eager",
        "eager + CUDA graphs",
    ]
    # --compile cold and the default warm share one cache home: the first warms the second.
    homes = {(row, state): home for row, _, home, state, _ in st.process_plan(args, tmp_path)}
    assert homes[("--compile", "cold")] == homes[("default (auto)", "warm")]


def test_break_even_uses_the_default_warm_row_when_quick_left_out_compile_warm():
    """The thresholds are set from these lines: compile seconds / seconds saved per image."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import sample_throughput as st

    def row(name, cache, wall, compiled="yes"):
        return {"row": name, "cache": cache, "wall s": wall, "images": 100, "compiled": compiled}

    process = [
        row("eager baseline", "-", 10.0, "no"),
        row("--compile", "cold", 30.0),
        row("default (auto)", "warm", 14.0),
    ]
    steady = [
        {"row": "steady: eager", "images/s": 10.0},
        {"row": "steady: torch.compile", "images/s": 20.0},
    ]
    # Saved per image: 1/10 - 1/20 = 0.05 s. Cold: 30 - 10 + 100 × 0.05 = 25 s → 500 images;
    # warm (the default's warm row): 14 - 10 + 5 = 9 s → 180 images.
    cold, warm = st.break_even(process, steady)
    assert "cold cache: ~25 s" in cold and "from 500 images" in cold
    assert "warm cache: ~9 s" in warm and "from 180 images" in warm
    process[2]["compiled"] = "no"  # an eager warm row says nothing about compiling
    assert len(st.break_even(process, steady)) == 1


def test_pack_stacks_sets_into_fewer_files_when_there_are_many_and_unpacks_them_exactly(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import sample_pack

    g = torch.Generator().manual_seed(0)
    sets = {}
    for k in range(11):  # 11 sets + pack.json: more than one return's 8 files
        n = 5 + k % 3  # partial last rows, sets of different sizes
        sets[f"samples-s{k}.safetensors"] = {
            "images": torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g),
            "labels": torch.randint(0, 3, (n,), generator=g),
        }
    for name, t in sets.items():
        save_file(t, str(tmp_path / name))
    sent = sample_pack.pack(tmp_path, tmp_path / "out", files=7)
    assert len(sent) == 7 and len(list((tmp_path / "out").iterdir())) == 7
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", f.name) for f in sent)
    sample_pack.unpack(tmp_path / "out", tmp_path / "back")
    for name, t in sets.items():
        back = load_file(str(tmp_path / "back" / name))
        assert torch.equal(back["images"], t["images"]) and torch.equal(back["labels"], t["labels"])
    with pytest.raises(SystemExit, match="at least 2"):
        sample_pack.pack(tmp_path, tmp_path / "x", files=1)


def test_steady_only_times_eager_against_cuda_graphs(tmp_path):
    """``--steady-only --variants graphs``: section 2 alone. On the CPU the graphs variant
    samples eagerly (a note says so), so its images are eager's exactly."""
    env = script_env(tmp_path / "xdg")
    out = tmp_path / "rows.json"
    cmd = [sys.executable, str(SCRIPT), "--smoke", "--steady-only", "--variants", "graphs"]
    proc = subprocess.run(
        [*cmd, "--work", str(tmp_path / "w"), "--json", str(out), "--steady-deep-cache", "1,3"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["row"] for r in rows] == [
        "steady: eager",  # the default's deep cache (3): no second row of it
        "steady: eager, deep cache 1 (exact)",
        "steady: eager + CUDA graphs",
        "steady: eager + CUDA graphs, deep cache 1 (exact)",
    ]
    assert rows[2]["max |Δ|"] == 0 and rows[2]["images/s"] > 0
    # the exact model: other pixels than the default's deep cache, the same on either model
    assert rows[1]["mean |Δ|"] > 0 and rows[3]["mean |Δ|"] == rows[1]["mean |Δ|"]
    assert rows[1]["images/s"] > 0 and rows[1]["vs eager"] > 0
    assert not (tmp_path / "w" / "out-0").exists()  # no sample processes
    bad = subprocess.run([*cmd[:2], "--variants", "turbo"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--variants: unknown turbo" in bad.stderr


def test_a_sweep_always_holds_the_default_recipe_once_and_each_setting_once():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import sample_throughput as st

    default = ("dpmsolver++", 25, False, None, "time", 3.0, 3)
    other_seeds = ("dpmsolver++", 25, True, None, "time", 3.0, 3)
    assert st.sweep_settings("unipc,unipc", "15,17,15") == [
        ("unipc", 15, False, None, "time", 3.0, 3),
        ("unipc", 17, False, None, "time", 3.0, 3),
        default,  # the yardstick, not asked for
        other_seeds,  # the chance yardstick
    ]
    asked = st.sweep_settings("dpmsolver++", "20,25", ["0.28,5.42"])
    assert asked == [
        ("dpmsolver++", 20, False, None, "time", 3.0, 3),
        default,
        ("dpmsolver++", 25, False, (0.28, 5.42), "time", 3.0, 3),
        other_seeds,
    ]
    # logsnr only where the sampler takes custom timesteps (not UniPC)
    spaced = st.sweep_settings("unipc,dpmsolver++", "15", spacings="time,logsnr")
    assert spaced == [
        ("unipc", 15, False, None, "time", 3.0, 3),
        ("dpmsolver++", 15, False, None, "time", 3.0, 3),
        ("dpmsolver++", 15, False, None, "logsnr", 3.0, 3),
        default,
        other_seeds,
    ]
    with pytest.raises(ValueError, match="--sweep-spacings"):
        st.sweep_settings("dpmsolver++", "15", spacings="karras")
    # other guidance scales for the swept rows; the yardsticks keep the default's
    scaled = st.sweep_settings("dpmsolver++", "12", spacings="logsnr", guidances="2,2.5,2")
    assert scaled == [
        ("dpmsolver++", 12, False, None, "logsnr", 2.0, 3),
        ("dpmsolver++", 12, False, None, "logsnr", 2.5, 3),
        default,
        other_seeds,
    ]
    row = st.SweepRow("dpmsolver++", 12, spacing="logsnr", guidance=2.5)
    assert row.tag == "dpmsolver++-12-logsnr-g2.5-deep-cache-3"
    assert row.recipe == "dpmsolver++ 12 steps, logsnr spacing, guidance 2.5, deep cache 3"
    # the default's deep cache is named (a set named without it is the exact model's)
    assert st.SweepRow("dpmsolver++", 25).tag == "dpmsolver++-25-deep-cache-3"
    assert st.SweepRow("dpmsolver++", 25, deep_cache=1).tag == "dpmsolver++-25"
    for bad in ("x", "-1", "nan"):
        with pytest.raises(ValueError, match="--sweep-guidance"):
            st.sweep_settings("dpmsolver++", "15", guidances=bad)
    # the default recipe with each deep-cache interval (1: the exact model), each set once
    cached = st.sweep_settings("dpmsolver++", "25", deep_caches="2,3,1,2")
    assert cached == [
        default,
        ("dpmsolver++", 25, False, None, "time", 3.0, 2),
        ("dpmsolver++", 25, False, None, "time", 3.0, 1),
        other_seeds,
    ]
    row = st.SweepRow("dpmsolver++", 25, deep_cache=2)
    assert row.tag == "dpmsolver++-25-deep-cache-2"
    assert row.recipe == "dpmsolver++ 25 steps, deep cache 2"


@pytest.mark.parametrize("deep_cache", [1, 2, 3])
def test_flops_per_image_are_those_sampling_runs(tmp_path, deep_cache):
    """The TFLOP/s column counts what the recipe evaluates: the whole UNet at the deep
    cache's whole steps, its shallow pass between, for every label row of the mix."""
    from sampling_helpers import make_run
    from torch.utils.flop_counter import FlopCounterMode

    from facediff.config import SampleConfig
    from facediff.generation import generate
    from facediff.loading import load_for_inference
    from facediff.mix import parse_mix

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import sample_throughput as st

    loaded = load_for_inference(make_run(tmp_path / "run"))
    null = loaded.categories.null_label
    passes = st.pass_flops(loaded.unet, loaded.model_config.sample_size, null)
    assert 0 < passes[1] < passes[0]
    cfg = SampleConfig(steps=7, deep_cache=deep_cache, device="cpu")
    jobs = [(parse_mix("O", loaded.categories), 2), (parse_mix("OIE", loaded.categories), 1)]
    counted = 0.0
    for mix, n in jobs:
        with FlopCounterMode(display=False) as counter:
            generate(loaded, mix, list(range(n)), cfg)
        counted += counter.get_total_flops()
    assert st.job_flops(passes, jobs, cfg, null) == pytest.approx(counted / 3, rel=1e-9)
    # O evaluates 2 rows a step, OIE 4: (2 × 2 + 4) / 3 rows per image on average
    whole = len(range(0, 7, deep_cache))
    assert counted / 3 == pytest.approx(8 / 3 * (whole * passes[0] + (7 - whole) * passes[1]))


def test_the_compiled_column_asks_the_cache_sampling_writes(tmp_path):
    """A process row says "compiled" from the compile cache of the job it runs: with the
    deep cache (the default) that is the split UNet's cache, not the whole UNet's."""
    from sampling_helpers import make_run

    from facediff.compile_cache import cache_root
    from facediff.generation import compile_choice, prepare_denoiser
    from facediff.loading import load_for_inference

    loaded = load_for_inference(make_run(tmp_path / "run"))
    kw = dict(images=4, batch_size=2, shapes=(4,))
    for deep_cache in (1, 3):
        den = prepare_denoiser(loaded, device="cpu", compile=True, deep_cache=deep_cache, **kw)
        asked = compile_choice(
            loaded.model_config.to_dict(),
            torch.device("cpu"),
            torch.float32,
            True,
            deep_cache=deep_cache,
            cache_root=tmp_path / "home",
            **kw,
        )
        assert asked[0] and asked[1].key == den.cache.key and asked[2] == den.compile_mode
        assert den.cache.folder.relative_to(cache_root()) == asked[1].folder.relative_to(
            tmp_path / "home"
        )
    assert not compile_choice({}, torch.device("cpu"), torch.float32, False, images=1)[0]
