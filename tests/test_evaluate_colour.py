"""evaluate's colour-cast rate: ~0 for faithful samples, high for a tinted group; its colour
shift: within chance for faithful samples, beyond it for a mild tint they all share."""

from __future__ import annotations

import torch
from evaluate_helpers import SIZE, make_untrained_run, write_prepared, write_samples

from facediff.evaluation import JudgeConfig, evaluate
from facediff.synthetic import make_faces

GREEN = torch.tensor([0.0, 200.0, 0.0]).view(1, 3, 1, 1)


def evaluate_o_and(tmp_path, code: str, tinted: torch.Tensor, o: torch.Tensor, photos: int):
    """evaluate's report on unseen faces of O and ``tinted`` ones of ``code``, against
    ``photos`` prepared faces per category (seed 0)."""
    images, labels = make_faces(photos, size=SIZE, seed=0)
    data = write_prepared(tmp_path / "data", images, labels)
    run = make_untrained_run(tmp_path / "run", data)
    groups = {"O": ({"O": 1.0}, o), code: ({code: 1.0}, tinted)}
    return evaluate(
        run,
        data=data,
        samples=write_samples(tmp_path / "samples", groups),
        mixes=["O", code],
        per_group=len(o),
        judge_config=JudgeConfig(width=8, epochs=1),
        device="cpu",
        out=tmp_path / "out",
    )


def test_colour_casts_per_group_in_report(tmp_path):
    fresh, fresh_labels = make_faces(20, size=SIZE, seed=9)
    o, i = fresh[fresh_labels == 1], fresh[fresh_labels == 0]
    tinted = (0.3 * i.float() + 0.7 * GREEN).round().to(torch.uint8)
    result = evaluate_o_and(tmp_path, "I", tinted, o, photos=60)
    colour = result.report["colour"]
    assert colour["per_group"]["O"]["cast_rate"] <= 0.1
    assert colour["per_group"]["I"]["cast_rate"] >= 0.9
    assert colour["real_cast_rate"] <= 0.1
    assert colour["per_group"]["I"]["mean_rgb"][1] > colour["per_group"]["I"]["mean_rgb"][0]
    assert any("colour casts in I" in w for w in result.report["warnings"])
    md = (tmp_path / "out" / "report.md").read_text()
    assert "Colour casts" in md and "held-out photos" in md


def test_a_tint_every_sample_shares_is_reported_as_a_colour_shift(tmp_path):
    # Each image tinted only a little: within the photos' range one by one (cast rate ~0),
    # but the whole set is greener than the photos, which the shift and its warning name.
    fresh, fresh_labels = make_faces(60, size=SIZE, seed=9)
    o, e = fresh[fresh_labels == 1], fresh[fresh_labels == 2]
    greenish = (0.8 * e.float() + 0.2 * GREEN).round().to(torch.uint8)
    result = evaluate_o_and(tmp_path, "E", greenish, o, photos=100)
    colour = result.report["colour"]
    e_row, o_row = colour["per_group"]["E"], colour["per_group"]["O"]
    assert e_row["cast_rate"] <= 0.1
    assert e_row["shift"] > max(e_row["shift_chance"], colour["shift_warning"])
    assert o_row["shift"] < o_row["shift_chance"]
    assert e_row["tint_rgb"][1] > e_row["tint_rgb"][0] and e_row["tint_rgb"][1] > 0
    assert set(colour["real_shift"]) == {"I", "O", "E"}
    assert all(0.6 < v < 1.6 for v in colour["real_variety"].values())
    assert 0.6 < o_row["variety"] < 1.6  # unseen photos of O, as varied as photos
    warnings = result.report["warnings"]
    assert any(w.startswith("colour shift in E (") for w in warnings)
    assert not any("colour shift in" in w and "O" in w.split("(")[0] for w in warnings)
    assert not any("colour casts in" in w for w in warnings)
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| E | 60 |" in md and "(chance" in md and "G+" in md
