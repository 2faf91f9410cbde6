"""Issue 9, tracebacks and silent wrong results: bad options and crafted files on disk."""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import pytest
import torch
from evaluate_helpers import make_untrained_run, write_samples
from PIL import Image
from sampling_helpers import error_lines, invoke, make_run
from train_helpers import blocks_dataset, write_dataset

import facediff.generation as sampling
import facediff.training.step as training
from facediff.categories import DEFAULT_CATEGORIES
from facediff.config import MANIFEST_FILE
from facediff.errors import FacediffError
from facediff.evaluation import evaluate
from facediff.evaluation.judge_training import JudgeConfig
from facediff.mix import parse_mix, resolve_mixes
from facediff.synthetic import make_faces

FAST = ["--steps", "2", "--device", "cpu"]
TRAIN_FAST = ["--preset", "tiny", "--batch-size", "4", "--preview-every", "0", "--device", "cpu"]
HUGE_SEED = "99999999999999999999"


def _one_error(result, *needles: str) -> str:
    assert result.exit_code not in (0, None), result.output
    lines = error_lines(result)  # also asserts there is no traceback
    assert len(lines) == 1, result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("harden") / "run", steps=(10,))


@pytest.fixture
def data(tmp_path) -> Path:
    return blocks_dataset(tmp_path / "data", per_category=4)


def _eval_env(tmp_path: Path) -> tuple[Path, torch.Tensor]:
    images, labels = make_faces(6, size=16, seed=0)
    data = write_dataset(tmp_path / "data", images, labels)
    return make_untrained_run(tmp_path / "run", data), images


def _bomb_png(width: int, height: int) -> bytes:
    """A valid-looking PNG header declaring width×height, with almost no data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


# ---- item 5: more steps than the schedule allows


@pytest.mark.parametrize(
    ("sampler", "steps"), [("ddpm", "2000"), ("ddim", "1001"), ("ddim", "1000")]
)
def test_too_many_steps(run, tmp_path, sampler, steps):
    out = tmp_path / "s"
    result = invoke(
        ["sample", run, "--out", out, "-n", "1", "--sampler", sampler, "--steps", steps]
    )
    _one_error(result, "--steps", steps, sampler)
    assert not out.exists()


# ---- item 6: seeds out of range


@pytest.mark.parametrize("command", ["sample", "grid", "evaluate", "demo-data"])
def test_huge_seed_in_sampling_commands(run, tmp_path, command):
    args = [command, tmp_path / "x" if command == "demo-data" else run, "--seed", HUGE_SEED]
    _one_error(invoke(args), "--seed")


def test_seed_plus_n_past_the_largest_seed(run, tmp_path):
    result = invoke(["sample", run, "--out", tmp_path / "s", "-n", "2", "--seed", str(2**63 - 1)])
    _one_error(result, "--seed")


def test_huge_n_is_named_as_the_wrong_option(run, tmp_path):
    result = invoke(["sample", run, "--out", tmp_path / "s", "-n", HUGE_SEED])
    _one_error(result, "-n " + HUGE_SEED)


def test_a_category_option_listing_categories_is_not_sampled_as_a_hybrid(run, tmp_path):
    result = invoke(["sample", run, "--out", tmp_path / "s", "-n", "1", "-c", "O,I", *FAST])
    _one_error(result, "--category 'O,I'", "-c O -c I", "--mix O,I")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("out", ["a file", "a file/x/y"])
def test_sample_out_through_a_file_is_named(run, tmp_path, out):
    (tmp_path / "a file").write_text("notes")
    result = invoke(["sample", run, "--out", tmp_path / out, "-n", "1", "--force", *FAST])
    _one_error(result, f"--out {tmp_path / out}: {tmp_path / 'a file'} is a file, not a folder")
    assert (tmp_path / "a file").read_text() == "notes"


@pytest.mark.parametrize("option", ["--preview-every", "--lr-warmup-steps"])
def test_a_negative_step_count_names_only_its_option(data, tmp_path, option):
    fast = [a for a in TRAIN_FAST if a not in ("--preview-every", "0")]
    result = invoke(["train", data, "--out", tmp_path / "r", *fast, option, "-1"])
    line = _one_error(result, f"invalid {option} -1: must be an integer >= 0")
    other = ({"--preview-every", "--lr-warmup-steps"} - {option}).pop()
    assert other not in line
    assert not (tmp_path / "r").exists()


def test_huge_seed_in_train(data, tmp_path):
    result = invoke(["train", data, "--out", tmp_path / "r", "--seed", HUGE_SEED, *TRAIN_FAST])
    _one_error(result, "--seed")
    assert not (tmp_path / "r").exists()


def test_seed_checked_in_the_api(run):
    from facediff.loading import load_for_inference

    loaded = load_for_inference(run)
    with pytest.raises(FacediffError, match="seed"):
        sampling.generate(loaded, parse_mix("I", loaded.categories), [2**64], steps=1)


# ---- item 8: non-string fields in a categories file, manifest or state


def test_non_string_category_fields(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    cats = tmp_path / "cats.json"
    cats.write_text(json.dumps([{"prefix": 1, "name": "One", "code": "O"}]))
    result = invoke(["prepare", raw, "--out", tmp_path / "out", "--categories-file", cats])
    _one_error(result, str(cats), "prefix")
    cats.write_text(json.dumps([1, 2]))
    _one_error(invoke(["prepare", raw, "--out", tmp_path / "o", "--categories-file", cats]), "cats")


def test_non_string_category_in_manifest(data, tmp_path):
    manifest = json.loads((data / MANIFEST_FILE).read_text())
    manifest["categories"][0]["name"] = ["Indian"]
    (data / MANIFEST_FILE).write_text(json.dumps(manifest))
    result = invoke(["train", data, "--out", tmp_path / "r", *TRAIN_FAST])
    _one_error(result, str(data / MANIFEST_FILE))


def _flip_last_byte(path: Path) -> None:
    """One pixel of the last image changes: the file still loads, with other pixels."""
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x01
    path.write_bytes(bytes(raw))


def test_a_flipped_pixel_byte_in_the_packed_file_is_refused_by_train(data, tmp_path):
    from facediff.config import PACKED_FILE

    _flip_last_byte(data / PACKED_FILE)
    result = invoke(["train", data, "--out", tmp_path / "r", "--max-steps", "1", *TRAIN_FAST])
    _one_error(result, str(data / PACKED_FILE), "damaged")
    assert not (tmp_path / "r").exists()


def test_a_flipped_pixel_byte_in_the_packed_file_is_refused_by_evaluate(tmp_path):
    from facediff.config import PACKED_FILE

    run, _ = _eval_env(tmp_path)
    _flip_last_byte(tmp_path / "data" / PACKED_FILE)
    args = [
        "evaluate",
        run,
        "--out",
        tmp_path / "ev",
        "-n",
        "2",
        "--steps",
        "2",
        "--judge-epochs",
        "1",
    ]
    _one_error(invoke(args), str(tmp_path / "data" / PACKED_FILE), "damaged")
    assert not (tmp_path / "ev").exists()


def test_non_string_category_in_state(tmp_path):
    run = make_run(tmp_path / "run", steps=(10,))
    state_path = run / "checkpoints" / "step-00000010" / "state.json"
    state = json.loads(state_path.read_text())
    state["categories"][1]["code"] = 7
    state_path.write_text(json.dumps(state))
    _one_error(invoke(["sample", run, "--out", tmp_path / "s", "-n", "1"]), "step-00000010")


def test_prepare_force_with_non_string_manifest_fields(tmp_path):
    from facediff.preparation import prepare
    from facediff.synthetic import make_demo_data

    raw = tmp_path / "raw"
    make_demo_data(raw, per_category=1, size=16)
    out = tmp_path / "out"
    prepare(raw, out, size=16, workers=1)
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    manifest["images"][0]["file"] = 5
    (out / MANIFEST_FILE).write_text(json.dumps(manifest))
    result = invoke(["prepare", raw, "--out", out, "--size", "16", "--force"])
    _one_error(result, str(out / MANIFEST_FILE), "nothing was deleted")


# ---- item 10: a decompression bomb in a samples folder


def test_bomb_png_in_samples_folder_for_grid(tmp_path):
    folder = tmp_path / "samples"
    (folder / "I").mkdir(parents=True)
    (folder / "I" / "I_0.png").write_bytes(_bomb_png(30000, 30000))
    result = invoke(["grid", "--from-samples", folder, "--out", tmp_path / "g.png"])
    _one_error(result, "I_0.png", "too large")
    assert not (tmp_path / "g.png").exists()


def test_bomb_png_in_samples_folder_for_evaluate(tmp_path):
    run, images = _eval_env(tmp_path)
    folder = write_samples(tmp_path / "samples", {"I": ({"I": 1.0}, images[:3])})
    (folder / "I" / "I_0.png").write_bytes(_bomb_png(30000, 30000))
    args = ["evaluate", run, "--samples", folder, "--out", tmp_path / "ev", "--judge-epochs", "1"]
    _one_error(invoke(args), "I_0.png", "too large")


@pytest.mark.parametrize(
    ("option", "named"),
    [(["--steps", "50"], "--steps"), (["--seed", "3"], "--seed"), (["--no-ema"], "--no-ema")],
)
def test_evaluate_samples_refuses_settings_that_would_change_the_images(tmp_path, option, named):
    """A folder's images are read, not sampled: --steps 50 was silently ignored."""
    run, images = _eval_env(tmp_path)
    folder = write_samples(tmp_path / "samples", {"I": ({"I": 1.0}, images[:3])})
    out = tmp_path / "ev"
    args = ["evaluate", run, "--samples", folder, "--out", out, "--judge-epochs", "1"]
    line = _one_error(invoke([*args, *option]), named, "cannot be used with --samples")
    assert line.startswith(f"facediff: error: {named} "), line
    assert not out.exists()
    result = invoke([*args, "--device", "cpu", "--batch-size", "4"])  # how, not what
    assert result.exit_code == 0, result.output
    warnings = json.loads((out / "report.json").read_text())["warnings"]
    (few,) = [w for w in warnings if w.startswith("fewer than")]
    assert few.endswith("(raise -n, or sample more into the folder)"), few  # -n only caps


# ---- item 12: out of memory


def test_out_of_memory_in_train_is_one_line(data, tmp_path, monkeypatch):
    def oom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB\nmore")

    monkeypatch.setattr(training, "train_step", oom)
    result = invoke(["train", data, "--out", tmp_path / "r", "--batch-size", "100000", *TRAIN_FAST])
    _one_error(result, "out of memory", "--batch-size")


def test_out_of_memory_in_sample_is_one_line(run, tmp_path):
    result = invoke(["sample", run, "--out", tmp_path / "s", "-n", str(10**13), *FAST])
    _one_error(result, "out of memory", "-n")


def test_cpu_allocator_failure_is_one_line(run, tmp_path, monkeypatch):
    def cpu_oom(*a, **k):
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:118] DefaultCPUAllocator: can't "
            "allocate memory: you tried to allocate 81920000000 bytes."
        )

    monkeypatch.setattr(sampling, "_sample_batch", cpu_oom)
    result = invoke(["sample", run, "--out", tmp_path / "s", "-n", "1", "--batch-size", "9", *FAST])
    _one_error(result, "out of memory", "--batch-size")


# ---- item 13: guidance must be finite


@pytest.mark.parametrize("value", ["inf", "nan", "-1"])
def test_guidance_must_be_finite(run, tmp_path, value):
    out = tmp_path / "s"
    _one_error(invoke(["sample", run, "--out", out, "-n", "1", "--guidance", value]), "--guidance")
    assert not out.exists()


def test_guidance_checked_in_the_api(run):
    from facediff.loading import load_for_inference

    loaded = load_for_inference(run)
    for value in (float("inf"), float("nan")):
        with pytest.raises(FacediffError, match="guidance"):
            sampling.generate(loaded, parse_mix("I", loaded.categories), [0], guidance=value)


# ---- item 14: huge weights normalise to finite positive values


def test_huge_weights_normalise():
    mix = parse_mix("O:1e308,I:1e308", DEFAULT_CATEGORIES)
    assert mix.weights == (0.5, 0.5) and mix.label == "OI"
    skewed = parse_mix("O:1e308,I:1e307", DEFAULT_CATEGORIES)
    assert skewed.label == "O91I9"
    with pytest.raises(FacediffError, match="do not normalise"):
        parse_mix("O:1e308,I:1e-300", DEFAULT_CATEGORIES)


def test_huge_weights_sample_the_mix_not_unconditional(run, tmp_path):
    out = tmp_path / "s"
    result = invoke(["sample", run, "--out", out, "-n", "1", "--mix", "O:1e308,I:1e308", *FAST])
    assert result.exit_code == 0, result.output
    entry = json.loads((out / "samples.json").read_text())["entries"][0]
    assert entry["mixes"] == {"OI": {"O": 0.5, "I": 0.5}}


# ---- item 15: colliding mix labels are refused, not dropped


def test_colliding_mix_labels_are_refused(run, tmp_path):
    out = tmp_path / "s"
    args = ["sample", run, "--out", out, "-n", "1", "--mix", "O:0.7,I:0.3"]
    result = invoke([*args, "--mix", "O:0.704,I:0.296", *FAST])
    _one_error(result, "O70I30", "O:0.704,I:0.296")
    assert not out.exists()
    same = invoke([*args, "--mix", "O:7,I:3", *FAST])  # the same mix twice: one folder
    assert same.exit_code == 0, same.output
    with pytest.raises(FacediffError, match="O70I30"):
        resolve_mixes(DEFAULT_CATEGORIES, ["O:0.7,I:0.3", "O:0.704,I:0.296"])


def test_colliding_mix_labels_in_evaluate(tmp_path):
    run, _ = _eval_env(tmp_path)
    with pytest.raises(FacediffError, match="O70I30"):
        evaluate(run, mixes=["O:0.7,I:0.3", "O:0.704,I:0.296"], per_group=2, out=tmp_path / "e")


# ---- item 16: labels in samples.json are names, never paths


def test_samples_json_labels_are_not_paths(tmp_path):
    run, images = _eval_env(tmp_path)
    outside = tmp_path / "data" / "Indian"  # a real folder of images outside the samples
    write_samples(tmp_path / "tmp", {"I": ({"I": 1.0}, images[:3])})
    (tmp_path / "tmp" / "I").rename(outside)
    folder = tmp_path / "deep" / "samples"
    folder.mkdir(parents=True)
    (folder / "samples.json").write_text(
        json.dumps({"entries": [{"mixes": {"../../data/Indian": {"I": 1.0}}}]})
    )
    with pytest.raises(FacediffError, match=r"samples.json.*'\.\./\.\./data/Indian'"):
        evaluate(
            run,
            samples=folder,
            per_group=2,
            out=tmp_path / "e",
            judge_config=JudgeConfig(width=8, epochs=1),
        )
    assert not (tmp_path / "e").exists()


# ---- item 4, beyond photos: JSON files facediff reads are regular files, bounded


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_json_inputs_that_are_fifos_or_devices_do_not_hang(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    fifo = tmp_path / "cats.json"
    os.mkfifo(fifo)
    for source in (fifo, Path("/dev/zero")):
        result = invoke(["prepare", raw, "--out", tmp_path / "o", "--categories-file", source])
        _one_error(result, str(source), "not a regular file")
    folder = tmp_path / "samples"
    (folder / "I").mkdir(parents=True)
    Image.new("RGB", (16, 16)).save(folder / "I" / "I_0.png")
    os.mkfifo(folder / "samples.json")
    result = invoke(["grid", "--from-samples", folder, "--out", tmp_path / "g.png"])
    assert result.exit_code == 0, result.output  # the record is optional: ignored, not read


# ---- training's number options must be finite where inf/nan would wreck the run


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--lr", "inf"),
        ("--lr", "nan"),
        ("--lr", "0"),
        ("--ema-decay", "nan"),
        ("--cond-drop", "inf"),
    ],
)
def test_train_number_options_are_checked_before_training(data, tmp_path, option, value):
    out = tmp_path / "r"
    result = invoke(["train", data, "--out", out, "--max-steps", "1", option, value, *TRAIN_FAST])
    _one_error(result, option)
    assert not out.exists()


def test_optimizer_settings_checked_in_the_api():
    from facediff.config import TrainConfig

    for bad in (
        {"grad_clip": float("nan")},
        {"weight_decay": float("inf")},
        {"weight_decay": -0.1},
        {"adam_betas": (0.9, 1.0)},
        {"lr": float("inf")},
    ):
        with pytest.raises(FacediffError, match=next(iter(bad)).replace("_", " ")):
            TrainConfig(**bad)
