import json

import pytest
import torch
from evaluate_helpers import write_prepared

from facediff.dataset import load_prepared
from facediff.evaluation.judge import JUDGE_DIR, JUDGE_INFO, load_or_train_judge, split_indices
from facediff.evaluation.judge_training import JudgeConfig
from facediff.synthetic import make_faces

CPU = torch.device("cpu")
FAST = JudgeConfig(width=8, epochs=8)


@pytest.fixture(scope="module")
def faces_data(tmp_path_factory):
    images, labels = make_faces(40, size=32, seed=0)
    return load_prepared(write_prepared(tmp_path_factory.mktemp("data"), images, labels))


def test_split_is_stratified_deterministic_and_disjoint():
    labels = torch.tensor([0] * 100 + [1] * 30 + [2] * 7)
    train, held = split_indices(labels, 0.15, seed=3)
    again_train, again_held = split_indices(labels, 0.15, seed=3)
    assert torch.equal(held, again_held) and torch.equal(train, again_train)
    assert not set(train.tolist()) & set(held.tolist())
    assert len(train) + len(held) == len(labels)
    assert torch.bincount(labels[held]).tolist() == [15, 4, 1]
    _, other = split_indices(labels, 0.15, seed=4)
    assert not torch.equal(held, other)


def test_judge_learns_synthetic_faces_and_is_cached(tmp_path, faces_data):
    judge = load_or_train_judge(tmp_path, faces_data, FAST, device=CPU)
    assert judge.trained
    info = json.loads((tmp_path / JUDGE_DIR / JUDGE_INFO).read_text())
    assert info["data"]["fingerprint"] == faces_data.fingerprint
    assert info["heldout_accuracy"]["overall"] > 0.9, info["heldout_accuracy"]
    assert info["split"]["heldout_count"] == 18
    # Fresh faces it has never seen are recognised too.
    images, labels = make_faces(20, size=32, seed=99)
    probs, feats = judge.run(images)
    assert (probs.argmax(1) == labels).float().mean() > 0.9
    assert probs.sum(1).allclose(torch.ones(len(labels)))
    assert feats.shape == (len(labels), judge.net.feature_dim)

    cached = load_or_train_judge(tmp_path, faces_data, FAST, device=CPU)
    assert not cached.trained
    assert torch.equal(cached.heldout_indices, judge.heldout_indices)
    assert torch.allclose(cached.run(images)[0], probs, atol=1e-5)
    # None fields accept whatever the cache used.
    assert not load_or_train_judge(tmp_path, faces_data, JudgeConfig(), device=CPU).trained


def test_judge_retrains_when_data_changes(tmp_path, faces_data):
    load_or_train_judge(tmp_path, faces_data, JudgeConfig(width=8, epochs=1), device=CPU)
    images, labels = make_faces(12, size=32, seed=1)
    other = load_prepared(write_prepared(tmp_path / "other", images, labels))
    judge = load_or_train_judge(tmp_path, other, JudgeConfig(width=8, epochs=1), device=CPU)
    assert judge.trained
    info = json.loads((tmp_path / JUDGE_DIR / JUDGE_INFO).read_text())
    assert info["data"]["fingerprint"] == other.fingerprint
    # A different requested setting retrains as well.
    assert load_or_train_judge(tmp_path, other, JudgeConfig(width=8, epochs=2), device=CPU).trained


def test_damaged_cache_is_retrained(tmp_path, faces_data):
    cfg = JudgeConfig(width=8, epochs=1)
    load_or_train_judge(tmp_path, faces_data, cfg, device=CPU)
    (tmp_path / JUDGE_DIR / "judge.safetensors").write_bytes(b"garbage")
    assert load_or_train_judge(tmp_path, faces_data, cfg, device=CPU).trained
