"""The judge's attribute heads: trained on known labels only, their own held-out accuracy,
and judges cached before attributes existed still load (or are retrained)."""

import json

import pytest
import torch
from evaluate_helpers import attribute_faces
from train_helpers import write_dataset

from facediff.attributes import AttributeSet, age_attribute, gender_attribute
from facediff.dataset import load_prepared
from facediff.evaluation.judge import (
    JUDGE_DIR,
    JUDGE_INFO,
    attribute_cells,
    load_or_train_judge,
    split_indices,
)
from facediff.evaluation.judge_training import JudgeConfig, train_judge
from facediff.synthetic import make_faces

CPU = torch.device("cpu")
FAST = JudgeConfig(width=8, epochs=8)
ATTRS = AttributeSet((age_attribute((30, 60)), gender_attribute()))


@pytest.fixture(scope="module")
def attr_data(tmp_path_factory):
    images, labels, values = attribute_faces(40, seed=0)
    truth = values.clone()
    # A quarter of each attribute is unknown; the images still show the true cue, so a
    # judge that learnt from unknown labels as if they were a value would be wrong there.
    values[::4, 0] = -1
    values[1::4, 1] = -1
    out = tmp_path_factory.mktemp("data")
    write_dataset(out, images, labels, attributes=ATTRS, attribute_labels=values)
    return load_prepared(out), truth


def test_heldout_images_spread_over_attribute_cells(attr_data):
    data, _ = attr_data
    cells = attribute_cells(data)
    train, held = split_indices(data.labels, 0.15, 0, cells)
    _, plain_held = split_indices(data.labels, 0.15, 0)
    # The same number held out per category as without attributes, and a partition.
    assert torch.equal(torch.bincount(data.labels[held]), torch.bincount(data.labels[plain_held]))
    assert sorted(train.tolist() + held.tolist()) == list(range(len(data)))
    assert torch.equal(split_indices(data.labels, 0.15, 0, cells)[1], held)
    # Each category's held-out images cover several cells, in proportion (at most one
    # more or fewer than the cell's share), not whichever came first.
    for k in range(3):
        mine = data.labels == k
        n_held = int((data.labels[held] == k).sum())
        for c in torch.unique(cells[mine]).tolist():
            share = int((cells[mine] == c).sum()) * n_held / int(mine.sum())
            got = int(((data.labels[held] == k) & (cells[held] == c)).sum())
            assert abs(got - share) <= 1, (k, c, got, share)


def test_judge_predicts_attributes_from_known_labels(tmp_path, attr_data):
    data, truth = attr_data
    judge = load_or_train_judge(tmp_path, data, FAST, device=CPU)
    info = json.loads((tmp_path / JUDGE_DIR / JUDGE_INFO).read_text())
    assert info["attributes"] == ATTRS.to_list()
    acc = info["attribute_accuracy"]
    assert set(acc) == {"age", "gender"}
    held = judge.heldout_indices
    known_age = int((data.attribute_labels[held, 0] >= 0).sum())
    assert acc["age"]["n"] == known_age and acc["age"]["unknown"] == len(held) - known_age
    assert acc["age"]["values"] == ["0-29", "30-59", "60+"]
    for name in ("age", "gender"):
        assert acc[name]["overall"] > 0.9, acc[name]
        assert sum(map(sum, acc[name]["confusion"])) == acc[name]["n"]
        assert set(acc[name]["per_category"]) == {"I", "O", "E"}
    assert info["heldout_accuracy"]["overall"] > 0.8  # the category head still works
    # Fresh images, including the cues of the images whose labels were unknown.
    images, labels, values = attribute_faces(20, seed=5)
    probs, _, attrs = judge.run_all(images)
    assert (probs.argmax(1) == labels).float().mean() > 0.8
    assert (attrs["age"].argmax(1) == values[:, 0]).float().mean() > 0.9
    assert (attrs["gender"].argmax(1) == values[:, 1]).float().mean() > 0.9
    unknown = torch.arange(len(truth))[::4]
    seen_age = judge.run_all(data.images[unknown])[2]["age"].argmax(1)
    assert (seen_age == truth[unknown, 0]).float().mean() > 0.9
    # Cached: the heads come back.
    cached = load_or_train_judge(tmp_path, data, FAST, device=CPU)
    assert not cached.trained and cached.attributes == ATTRS
    assert torch.allclose(cached.run_all(images)[2]["gender"], attrs["gender"], atol=1e-5)


def test_judge_without_attributes_is_unchanged(tmp_path):
    images, labels = make_faces(12, size=32, seed=0)
    data = load_prepared(write_dataset(tmp_path / "d", images, labels))
    judge = load_or_train_judge(tmp_path, data, JudgeConfig(width=8, epochs=1), device=CPU)
    info = json.loads((tmp_path / JUDGE_DIR / JUDGE_INFO).read_text())
    assert "attributes" not in info and "attribute_accuracy" not in info
    assert not any(k.startswith("attribute") for k in judge.net.state_dict())
    assert judge.run_all(images)[2] == {}
    # The split of data without attributes is the category-stratified one, as before.
    assert torch.equal(judge.heldout_indices, split_indices(labels, 0.15, 0)[1])


def test_judge_cached_before_attributes_is_retrained_not_crashed(tmp_path, attr_data):
    data, _ = attr_data
    plain = load_prepared(
        write_dataset(tmp_path / "plain", data.images, data.labels)  # same images, no labels
    )
    cfg = JudgeConfig(width=8, epochs=1)
    load_or_train_judge(tmp_path, plain, cfg, device=CPU)
    # Pretend the cached judge was for this very data (as if the fingerprint matched).
    path = tmp_path / JUDGE_DIR / JUDGE_INFO
    info = json.loads(path.read_text())
    info["data"]["fingerprint"] = data.fingerprint
    path.write_text(json.dumps(info))
    judge = load_or_train_judge(tmp_path, data, cfg, device=CPU)
    assert judge.trained and judge.attributes == ATTRS
    # And a cached attribute judge whose info lost its attribute list is retrained too.
    info = json.loads(path.read_text())
    del info["attributes"]
    path.write_text(json.dumps(info))
    assert load_or_train_judge(tmp_path, data, cfg, device=CPU).trained


@pytest.mark.parametrize("epochs", [1, 2])
def test_very_short_judge_training_does_not_crash(epochs):
    # 80 images: batch 16, 5 steps per epoch (0.2 × 5 steps once divided by zero).
    images, labels = make_faces(27, size=16, seed=0)
    net = train_judge(images[:80], labels[:80], 3, JudgeConfig(width=4, epochs=epochs), CPU)
    assert not net.training
