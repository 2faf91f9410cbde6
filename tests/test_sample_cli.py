"""`facediff sample` and the sample() API: layout, record, refusals, run/export sources."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from sampling_helpers import error_lines, invoke, make_run

from facediff.config import DEFAULT_RUN_DIR, DEFAULT_SAMPLES_DIR, SampleConfig
from facediff.errors import FacediffError
from facediff.sample_folder import sample

FAST = ["--steps", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("s") / "run", steps=(10, 20))


def test_default_mixes_layout_and_record(run, tmp_path):
    out = tmp_path / "out"
    r = invoke(["sample", run, "-n", "2", "--seed", "7", "--out", out, *FAST])
    assert r.exit_code == 0, r.output
    labels = ["I", "O", "E", "OI", "OE", "IE", "OIE"]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(labels)
    for label in labels:
        files = sorted(p.name for p in (out / label).iterdir())
        assert files == [f"{label}_7.png", f"{label}_8.png"]
        with Image.open(out / label / f"{label}_7.png") as im:
            assert im.size == (16, 16) and im.mode == "RGB"
    entry = json.loads((out / "samples.json").read_text())["entries"][-1]
    assert entry["step"] == 20 and entry["weights"] == "ema"
    assert entry["sampler"] == SampleConfig().sampler and entry["steps"] == 2
    assert entry["guidance"] == SampleConfig().guidance and entry["mix_mode"] == "compose"
    assert entry["seeds"] == [7, 8] and entry["size"] == 16
    assert list(entry["mixes"]) == labels
    assert entry["mixes"]["OIE"] == pytest.approx({"O": 1 / 3, "I": 1 / 3, "E": 1 / 3})
    assert entry["seconds"] >= 0


def test_refuses_to_overwrite_then_force(run, tmp_path):
    out = tmp_path / "out"
    args = ["sample", run, "--mix", "O:0.7,I:0.3", "-n", "1", "--out", out, *FAST]
    assert invoke(args).exit_code == 0
    png = out / "O70I30" / "O70I30_0.png"
    before = png.read_bytes()
    r = invoke(args)
    assert r.exit_code == 1
    assert error_lines(r) == [f"facediff: error: {png} already exists; use --force to overwrite"]
    assert png.read_bytes() == before
    r = invoke([*args, "--force", "--mix-mode", "blend"])
    assert r.exit_code == 0, r.output
    entries = json.loads((out / "samples.json").read_text())["entries"]
    assert [e["mix_mode"] for e in entries] == ["compose", "blend"]


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--mix", "OX"], "unknown category 'X' in mix 'OX'; valid: I (Indian), O (Oriental)"),
        (["--mix", "O:0,I:1"], "weights must be positive"),
        (["--category", "Q"], "unknown category 'Q'"),
        (["--sampler", "heun"], "'heun' is not one of dpmsolver++"),
        (["--mix-mode", "avg"], "'avg' is not one of compose, blend"),
        (["-n", "0"], "-n"),
        (["--checkpoint", "15"], "no checkpoint for step 15"),
    ],
)
def test_bad_input_is_one_line(run, tmp_path, args, match):
    r = invoke(["sample", run, "--out", tmp_path / "o", *FAST, *args])
    assert r.exit_code == (1 if args[0] == "--checkpoint" else 2)  # runtime vs usage error
    lines = error_lines(r)
    assert len(lines) == 1 and match in lines[0], r.output
    assert not (tmp_path / "o").exists()


def test_default_run_and_checkpoint_choice(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_run(tmp_path / DEFAULT_RUN_DIR, steps=(5,))
    r = invoke(["sample", "--mix", "OIE", "-n", "3", *FAST])
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / DEFAULT_SAMPLES_DIR / "OIE").glob("OIE_*.png"))) == 3
    res = sample(
        run,
        tmp_path / "c",
        SampleConfig(n=1, steps=2, use_ema=False, device="cpu"),
        categories=["Oriental"],
        checkpoint_step=10,
    )
    assert list(res.files) == ["O"] and res.images == 1
    entry = json.loads(res.record_path.read_text())["entries"][0]
    assert entry["step"] == 10 and entry["weights"] == "model"


def test_sample_api_errors(tmp_path):
    with pytest.raises(FacediffError, match="run folder not found"):
        sample(tmp_path / "missing", tmp_path / "o", SampleConfig(n=1))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FacediffError, match="no complete checkpoint"):
        sample(tmp_path / "empty", tmp_path / "o", SampleConfig(n=1))


def test_each_batch_is_on_disk_before_the_next_and_an_interrupt_keeps_them(run, tmp_path):
    out, seen = tmp_path / "out", []
    config = SampleConfig(n=5, batch_size=2, steps=2, device="cpu")

    def progress(event):
        if event.task == "sample" and event.completed:
            seen.append((event.completed, sorted(p.name for p in out.rglob("*.png"))))
            if event.completed == 4:
                raise KeyboardInterrupt  # Ctrl-C while the third batch would start

    with pytest.raises(KeyboardInterrupt, match=f"kept the 4 finished images in {out}"):
        sample(run, out, config, categories=["E"], progress=progress)
    assert seen == [(2, ["E_0.png", "E_1.png"]), (4, ["E_0.png", "E_1.png", "E_2.png", "E_3.png"])]
    assert not (out / "samples.json").exists()  # the record says what a finished run made
    with Image.open(out / "E" / "E_1.png") as im:
        kept = im.tobytes()
    again = sample(run, out, config, categories=["E"], force=True)
    assert [p.name for p in again.files["E"]] == [f"E_{s}.png" for s in range(5)]
    with Image.open(again.files["E"][1]) as im:
        assert im.tobytes() == kept  # the same seed, the same image


def test_an_unreadable_record_is_not_replaced_without_force(run, tmp_path):
    """Appending to a samples.json it cannot read would drop the records in it (or a
    user's own file of that name): refused before sampling unless --force."""
    out = tmp_path / "out"
    args = ["sample", run, "-n", "1", "--out", out, *FAST]
    assert invoke([*args, "-c", "O"]).exit_code == 0
    assert invoke([*args, "-c", "E"]).exit_code == 0
    record = out / "samples.json"
    damaged = record.read_bytes()[:200]
    record.write_bytes(damaged)
    r = invoke([*args, "-c", "I"])
    assert r.exit_code == 1, r.output
    assert error_lines(r) == [
        f"facediff: error: {record} is not a readable samples record; move it away, or use "
        "--force to replace it"
    ]
    assert record.read_bytes() == damaged and not (out / "I").exists()
    record.write_text('{"entries": {"not": "a list"}}')
    assert invoke([*args, "-c", "I"]).exit_code == 1
    r = invoke([*args, "-c", "I", "--force"])
    assert r.exit_code == 0, r.output
    assert len(json.loads(record.read_text())["entries"]) == 1


def test_force_replaces_a_linked_png_and_never_writes_through_the_link(run, tmp_path):
    out = tmp_path / "out"
    victim = tmp_path / "victim.txt"
    victim.write_text("a file of the user's, outside OUT")
    (out / "I").mkdir(parents=True)
    link = out / "I" / "I_0.png"
    link.symlink_to(victim)
    args = ["sample", run, "-c", "I", "-n", "1", "--out", out, *FAST]
    assert invoke(args).exit_code == 1  # it exists: refused without --force
    r = invoke([*args, "--force"])
    assert r.exit_code == 0, r.output
    assert victim.read_text() == "a file of the user's, outside OUT"
    assert not link.is_symlink() and link.read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in (out / "I").iterdir()) == ["I_0.png"]  # no temporary left
