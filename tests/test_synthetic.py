"""Synthetic faces: deterministic, category-dependent, learnable but not one-pixel trivial."""

import pytest
import torch
from PIL import Image

from facediff.categories import CategoryMap, make_category
from facediff.dataset import load_prepared
from facediff.errors import FacediffError
from facediff.synthetic import make_demo_data, make_faces, write_synthetic_prepared


def test_shapes_labels_and_determinism():
    images, labels = make_faces(5, size=24, seed=3)
    assert images.dtype == torch.uint8 and images.shape == (15, 3, 24, 24)
    assert labels.dtype == torch.int64 and labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    again, _ = make_faces(5, size=24, seed=3)
    assert torch.equal(images, again)
    other, _ = make_faces(5, size=24, seed=4)
    assert not torch.equal(images, other)
    # image i of a category does not depend on how many were asked for
    fewer, _ = make_faces(2, size=24, seed=3)
    assert torch.equal(fewer[:2], images[:2])
    assert torch.equal(fewer[2:4], images[5:7])


def test_images_vary_within_a_category():
    images, _ = make_faces(6, size=32, seed=0)
    first = images[:6].float()
    assert (first - first.mean(0)).abs().mean() > 10  # position, size, colours differ


def _split(per_category, size):
    x, y = make_faces(per_category, size=size, seed=0)
    xt, yt = make_faces(per_category // 2, size=size, seed=1)
    return x.float() / 255, y, xt.float() / 255, yt


def test_categories_separate_but_not_by_one_pixel():
    x, y, xt, yt = _split(90, 32)
    means = torch.stack([x[y == k].mean(0) for k in range(3)])  # 3×3×H×W
    whole = ((xt[:, None] - means[None]) ** 2).flatten(2).sum(-1).argmin(1)
    assert (whole == yt).float().mean() >= 0.9  # class means of whole images separate
    per_pixel = ((xt[:, None] - means[None]) ** 2).sum(2).argmin(1)  # N×H×W
    best_pixel = (per_pixel == yt[:, None, None]).float().mean(0).max()
    assert best_pixel < 0.92  # …but no single pixel's colour gives the class away


@pytest.fixture
def one_thread():
    """Tiny convolutions run faster on one thread (and the suite runs beside others)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_tiny_cnn_learns_categories(one_thread):
    torch.manual_seed(0)
    x, y, xt, yt = _split(100, 24)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(16, 3),
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(100):
        i = torch.randint(0, len(x), (64,))
        loss = torch.nn.functional.cross_entropy(net(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        accuracy = (net(xt).argmax(1) == yt).float().mean()
    assert accuracy >= 0.85


def test_extra_categories_get_distinct_looks():
    cats = CategoryMap(
        tuple(make_category(f"c{i}", f"Cat{i}", chr(ord("A") + i)) for i in range(6))
    )
    images, labels = make_faces(20, size=24, seed=0, categories=cats)
    assert labels.max() == 5
    means = torch.stack([images[labels == k].float().mean(0) for k in range(6)])
    distances = torch.cdist(means.flatten(1), means.flatten(1))
    assert distances[~torch.eye(6, dtype=torch.bool)].min() > 100


def test_make_demo_data_writes_prefixed_pngs(tmp_path):
    out = tmp_path / "raw"
    paths = make_demo_data(out, per_category=3, size=20, seed=0)
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(p.name for p in paths)
    assert {"indian_0001.png", "asian_0003.png", "white_0002.png"} <= set(names)
    assert len(names) == 9
    with Image.open(out / "indian_0001.png") as im:
        assert im.size == (20, 20) and im.mode == "RGB"
    with pytest.raises(FacediffError, match="not an empty folder"):
        make_demo_data(out, per_category=1)


def test_write_synthetic_prepared(tmp_path):
    out = write_synthetic_prepared(tmp_path / "data", per_category=4, size=16, seed=0)
    data = load_prepared(out)
    assert len(data) == 12 and data.size == 16
    assert data.labels.bincount().tolist() == [4, 4, 4]
    expected, _ = make_faces(4, size=16, seed=0)
    # prepare keeps the pixels of already-square images at the target size
    assert set(map(bytes, data.images.flatten(1).numpy())) == set(
        map(bytes, expected.flatten(1).numpy())
    )
