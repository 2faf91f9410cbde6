"""`facediff demo`: the whole pipeline on synthetic faces, in a shortened form."""

from __future__ import annotations

import json

from PIL import Image
from sampling_helpers import error_lines, invoke

SMALL = [
    "--per-category", "4", "--size", "16", "--max-steps", "2",
    "--samples", "2", "--sample-steps", "2", "--device", "cpu",
]  # fmt: skip


def test_demo_end_to_end_over_a_previous_demo(tmp_path):
    out = tmp_path / "demo"
    (out / "samples" / "OI").mkdir(parents=True)
    (out / "samples" / "OI" / "OI_0.png").write_bytes(b"stale")
    r = invoke(["demo", "--out", out, *SMALL])
    assert r.exit_code == 1
    assert error_lines(r) == [
        f"facediff: error: {out} already exists and is not empty; use --force to redo the demo"
    ]
    r = invoke(["demo", "--out", out, "--force", *SMALL])
    assert r.exit_code == 0, r.output
    assert f"grid: {out / 'grid.png'}" in r.output.replace("\n", "")
    assert "sharpen" not in r.output  # --max-steps stopped it, not the time budget
    assert len(list((out / "raw").glob("*.png"))) == 12
    # The demo draws category faces only (no age/gender cues): a short CPU run learns them.
    assert sorted(p.name for p in (out / "raw").glob("indian_*.png"))[0] == "indian_0001.png"
    assert (out / "data" / "manifest.json").is_file()
    assert any((out / "run" / "checkpoints").iterdir())
    for label in ["I", "O", "E", "OI", "OE", "IE", "OIE"]:
        assert sorted(p.name for p in (out / "samples" / label).iterdir()) == [
            f"{label}_0.png",
            f"{label}_1.png",
        ]
    entry = json.loads((out / "samples" / "samples.json").read_text())["entries"][0]
    assert entry["step"] == 2 and entry["size"] == 16
    with Image.open(out / "grid.png") as im:
        assert im.width > 7 * 64 and im.height > 8 * 64  # 7 mix rows + a 7-image strip


def test_demo_refusals(tmp_path):
    out = tmp_path / "d"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    r = invoke(["demo", "--out", out, "--force", *SMALL])
    assert r.exit_code == 1 and "not touching it" in error_lines(r)[0]
    assert (out / "mine.txt").read_text() == "keep me"
    r = invoke(["demo", "--out", tmp_path / "e", "--max-steps", "0"])
    assert r.exit_code != 0 and "--max-steps" in error_lines(r)[0]
    r = invoke(["demo", "--out", tmp_path / "e", "--minutes", "0"])
    assert r.exit_code != 0 and "--minutes" in error_lines(r)[0]
    assert not (tmp_path / "e").exists()


def test_a_budget_that_stops_training_early_says_how_many_minutes_would_do():
    from facediff.demo import CLEAR_STEPS, DemoConfig, more_minutes

    c = DemoConfig()  # 3 minutes, up to 1,500 steps
    assert more_minutes(c, 495) == 7  # 3 * 1000 / 495 = 6.06, rounded up
    assert more_minutes(c, CLEAR_STEPS - 1) == 4
    assert more_minutes(c, CLEAR_STEPS) is None
    assert more_minutes(c, 0) is None
    # asked for fewer steps than that: no budget would make the run go past its own limit
    assert more_minutes(DemoConfig(max_steps=300), 300) is None
    assert more_minutes(DemoConfig(max_steps=300), 150) is None
    assert more_minutes(DemoConfig(max_steps=CLEAR_STEPS), 150) == 20
    assert more_minutes(DemoConfig(minutes=0.5), 100) == 5


def test_the_command_prints_the_advice(tmp_path, monkeypatch):
    import facediff.demo
    from facediff.demo import DemoResult

    def short_demo(out, config, **_):
        return DemoResult(out, out / "run", out / "samples", out / "grid.png", 495, 190.0, 7)

    monkeypatch.setattr(facediff.demo, "demo", short_demo)
    r = invoke(["demo", "--out", tmp_path / "d"])
    assert r.exit_code == 0, r.output
    assert (
        "only 495 training steps fit in 3 min on this machine; the faces sharpen by about "
        "1,000: run again with --force --minutes 7"
    ) in r.output.replace("\n", "")
