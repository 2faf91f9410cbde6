"""Look-alike samples: near-twins within a group are counted against how close photos come
to each other at the same count, and evaluate warns about a group whose faces repeat."""

from __future__ import annotations

import torch
from evaluate_helpers import SIZE, make_untrained_run, write_prepared, write_samples

from facediff.evaluation import JudgeConfig, evaluate
from facediff.evaluation.repeats import _draw_counts, look_alike, nearest_other, warns
from facediff.synthetic import make_faces

PHOTOS, PHOTO_LABELS = make_faces(150, size=SIZE, seed=0)  # 150 per category


def _fresh(code: int, n: int, seed: int = 9) -> torch.Tensor:
    images, labels = make_faces(n, size=SIZE, seed=seed)
    return images[labels == code]


def _repeated(faces: torch.Tensor, seed: int = 1) -> torch.Tensor:
    """Each face twice, the second copy with a little pixel noise (a repeated face)."""
    g = torch.Generator().manual_seed(seed)
    noisy = faces.float() + 3 * torch.randn(faces.shape, generator=g)
    return torch.cat([faces, noisy.round().clamp(0, 255).to(torch.uint8)])


def test_nearest_other_never_matches_an_image_to_itself():
    faces = _fresh(2, 10)
    d, index = nearest_other(faces)
    assert d.shape == (len(faces),) and bool((d > 0).all())
    assert bool((index != torch.arange(len(faces))).all())
    twins = torch.cat([faces[:1], faces[1:3], faces[:1]])
    d, index = nearest_other(twins)
    assert d[[0, 3]].tolist() == [0.0, 0.0] and index[[0, 3]].tolist() == [3, 0]


def test_unseen_faces_are_rarely_look_alike_and_repeated_faces_always_are():
    fresh = _fresh(2, 80)  # 80 unseen European faces
    got = look_alike(fresh, PHOTOS, PHOTO_LABELS, {2: 1.0})
    assert got.n == len(fresh) and got.share <= 0.06 and got.threshold > 0
    assert not warns(got.share, got.n)
    got = look_alike(_repeated(fresh[:40]), PHOTOS, PHOTO_LABELS, {2: 1.0})
    assert got.n == 80 and got.share == 1.0 and warns(got.share, got.n)
    # a tenth of the set repeated: caught, and a share that says how much; the closest
    # pairs shown are the repeated faces, each pair once
    tenth = torch.cat([fresh[:72], _repeated(fresh[72:76])])
    got = look_alike(tenth, PHOTOS, PHOTO_LABELS, {2: 1.0})
    assert 0.1 <= got.share <= 0.16
    assert {(i, j) for _, i, j in got.closest[:4]} == {(72 + k, 76 + k) for k in range(4)}
    distances = [d for d, _, _ in got.closest]
    assert len(distances) == 8 and distances == sorted(distances)


def test_sets_are_compared_at_one_count_and_too_few_say_nothing():
    fresh = _fresh(0, 400)  # more samples than the category has photos: n = the photos'
    got = look_alike(fresh, PHOTOS, PHOTO_LABELS, {0: 1.0})
    assert got.n == min(len(fresh), int((PHOTO_LABELS == 0).sum()))
    # the pairs shown name samples of the whole group, not of the subset compared
    assert max(j for _, _, j in got.closest) < len(fresh)
    assert look_alike(fresh[:7], PHOTOS, PHOTO_LABELS, {0: 1.0}) is None
    only_o = PHOTO_LABELS == 1  # a mix with a category without photos: no reference
    assert look_alike(fresh, PHOTOS[only_o], PHOTO_LABELS[only_o], {0: 0.5, 1: 0.5}) is None
    # a category named at weight 0 lends the mix no photos: 20 samples, 10 photos of O
    few_o = torch.cat(
        [
            torch.nonzero(PHOTO_LABELS == 1).flatten()[:10],
            torch.nonzero(PHOTO_LABELS == 0).flatten(),
        ]
    )
    assert look_alike(fresh[:20], PHOTOS[few_o], PHOTO_LABELS[few_o], {1: 1.0, 0: 0.0}).n == 10
    # the same call gives the same answer
    assert look_alike(fresh, PHOTOS, PHOTO_LABELS, {0: 1.0}) == look_alike(
        fresh, PHOTOS, PHOTO_LABELS, {0: 1.0}
    )


def test_a_mix_draws_its_categories_photos_in_its_weights():
    assert _draw_counts(10, {0: 0.7, 1: 0.3}, {0: 50, 1: 50}) == {0: 7, 1: 3}
    assert _draw_counts(10, {0: 0.5, 1: 0.5, 2: 0.0}, {0: 50, 1: 50, 2: 50}) == {0: 5, 1: 5}
    assert sum(_draw_counts(10, {0: 1 / 3, 1: 1 / 3, 2: 1 / 3}, {0: 9, 1: 9, 2: 9}).values()) == 10
    # a category short of photos: the others make up the count
    assert _draw_counts(10, {0: 0.5, 1: 0.5}, {0: 2, 1: 50}) == {0: 2, 1: 8}


def test_evaluate_reports_and_warns_about_look_alike_samples(tmp_path):
    fresh, labels = make_faces(60, size=SIZE, seed=9)
    o = fresh[labels == 1]
    e = _repeated(fresh[labels == 2][:30])  # every European face twice
    images, photo_labels = make_faces(100, size=SIZE, seed=0)
    data = write_prepared(tmp_path / "data", images, photo_labels)
    run = make_untrained_run(tmp_path / "run", data)
    groups = {"O": ({"O": 1.0}, o), "E": ({"E": 1.0}, e)}
    rep = evaluate(
        run,
        data=data,
        samples=write_samples(tmp_path / "samples", groups),
        mixes=["O", "E"],
        per_group=60,
        judge_config=JudgeConfig(width=8, epochs=1),
        device="cpu",
        out=tmp_path / "out",
    ).report
    memo = rep["memorisation"]
    assert memo["look_alike_quantile"] == 0.01
    assert memo["per_mix"]["E"]["look_alike_share"] == 1.0
    assert memo["per_mix"]["E"]["look_alike_n"] == 60
    assert memo["per_mix"]["O"]["look_alike_share"] <= 0.1
    alike = [w for w in rep["warnings"] if w.startswith("look-alike samples in")]
    assert len(alike) == 1 and alike[0].startswith("look-alike samples in E (")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| E | 60 |" in md and "1.000 (of 60)" in md and "look-alike share" in md
    # the pairs shown first are E's twins (a face and its noisy copy, 30 apart)
    shown = memo["closest_look_alike"]
    assert len(shown) == 8 and all(p["mix"] == "E" for p in shown)
    for pair in shown:
        i, j = pair["samples"]
        assert j - i == 30 and pair["distance"] < pair["threshold"]
    assert rep["files"]["look_alike"] == "look_alike.png"
    assert (tmp_path / "out" / "look_alike.png").is_file()
