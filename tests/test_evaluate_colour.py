"""evaluate's colour-cast rate: ~0 for faithful samples, high for a tinted group."""

from __future__ import annotations

import torch
from evaluate_helpers import SIZE, make_untrained_run, write_prepared, write_samples

from facediff.evaluation import JudgeConfig, evaluate
from facediff.synthetic import make_faces


def test_colour_casts_per_group_in_report(tmp_path):
    images, labels = make_faces(60, size=SIZE, seed=0)
    data = write_prepared(tmp_path / "data", images, labels)
    run = make_untrained_run(tmp_path / "run", data)
    fresh, fresh_labels = make_faces(20, size=SIZE, seed=9)
    o, i = fresh[fresh_labels == 1], fresh[fresh_labels == 0]
    green = torch.tensor([0.0, 200.0, 0.0]).view(1, 3, 1, 1)
    tinted = (0.3 * i.float() + 0.7 * green).round().to(torch.uint8)
    samples = write_samples(tmp_path / "samples", {"O": ({"O": 1.0}, o), "I": ({"I": 1.0}, tinted)})
    result = evaluate(
        run,
        data=data,
        samples=samples,
        mixes=["O", "I"],
        per_group=20,
        judge_config=JudgeConfig(width=8, epochs=1),
        device="cpu",
        out=tmp_path / "out",
    )
    colour = result.report["colour"]
    assert colour["per_group"]["O"]["cast_rate"] <= 0.1
    assert colour["per_group"]["I"]["cast_rate"] >= 0.9
    assert colour["real_cast_rate"] <= 0.1
    assert colour["per_group"]["I"]["mean_rgb"][1] > colour["per_group"]["I"]["mean_rgb"][0]
    assert any("colour casts in I" in w for w in result.report["warnings"])
    md = (tmp_path / "out" / "report.md").read_text()
    assert "Colour casts" in md and "held-out photos" in md
