"""Prepared datasets with attribute labels: the packed ``attributes`` tensor and its checks."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from train_helpers import people_dataset, write_dataset

from facediff.attributes import AttributeSet, age_attribute, gender_attribute
from facediff.config import MANIFEST_FILE, PACKED_FILE
from facediff.dataset import load_prepared, read_manifest, sha256_file, write_manifest
from facediff.errors import DataError

ATTRS = AttributeSet((age_attribute((30, 60)), gender_attribute()))


def _images(n: int = 6, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(n, 3, size, size, dtype=torch.uint8), torch.arange(n) % 3


def _with_attrs(tmp_path, attribute_labels, attributes=ATTRS):
    images, labels = _images(len(attribute_labels))
    return write_dataset(
        tmp_path / "data", images, labels, attributes=attributes, attribute_labels=attribute_labels
    )


def test_without_attributes_loads_as_before(tmp_path):
    images, labels = _images()
    data = load_prepared(write_dataset(tmp_path / "d", images, labels))
    assert data.attributes == AttributeSet() and not data.attributes
    assert data.attribute_labels is None
    assert "attributes" not in load_file(str(tmp_path / "d" / PACKED_FILE))


def test_attribute_labels_round_trip(tmp_path):
    values = torch.tensor([[0, 1], [2, 0], [-1, 1], [1, -1], [0, 0], [2, 1]])
    data = load_prepared(_with_attrs(tmp_path, values))
    assert data.attributes == ATTRS
    assert data.attributes.names == ("age", "gender") and data.attributes.sizes == (3, 2)
    assert data.attribute_labels is not None and data.attribute_labels.dtype == torch.int64
    assert torch.equal(data.attribute_labels, values)


def _rewrite_packed(data_dir, **changes):
    path = data_dir / PACKED_FILE
    tensors = load_file(str(path))
    for k, v in changes.items():
        if v is None:
            tensors.pop(k, None)
        else:
            tensors[k] = v
    save_file(tensors, str(path))
    manifest = read_manifest(data_dir)  # a consistent file: checked beyond its checksum
    manifest["packed"]["sha256"] = sha256_file(path)
    write_manifest(data_dir, manifest)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (torch.tensor([[0, 2]] * 6), "gender labels outside -1..1"),
        (torch.tensor([[3, 0]] * 6), "age labels outside -1..2"),
        (torch.tensor([[-2, 0]] * 6), "age labels outside -1..2"),
        (torch.zeros(6, 3, dtype=torch.int64), "must be int64 6×2"),
        (torch.zeros(5, 2, dtype=torch.int64), "must be int64 6×2"),
        (torch.zeros(6, 2, dtype=torch.int32), "must be int64 6×2"),
        (torch.zeros(6, dtype=torch.int64), "must be int64 6×2"),
    ],
)
def test_bad_attribute_tensor_is_one_line_error(tmp_path, bad, message):
    data_dir = _with_attrs(tmp_path, torch.zeros(6, 2, dtype=torch.int64))
    _rewrite_packed(data_dir, attributes=bad)
    with pytest.raises(DataError, match=message) as e:
        load_prepared(data_dir)
    assert "\n" not in str(e.value)


def test_attributes_listed_but_tensor_missing(tmp_path):
    data_dir = _with_attrs(tmp_path, torch.zeros(6, 2, dtype=torch.int64))
    _rewrite_packed(data_dir, attributes=None)
    with pytest.raises(DataError, match=r"lacks the attribute labels .*\(age, gender\)"):
        load_prepared(data_dir)


def test_tensor_present_but_manifest_lists_none(tmp_path):
    images, labels = _images()
    data_dir = write_dataset(tmp_path / "d", images, labels)
    _rewrite_packed(data_dir, attributes=torch.zeros(6, 2, dtype=torch.int64))
    with pytest.raises(DataError, match="attribute labels its manifest does not list"):
        load_prepared(data_dir)


@pytest.mark.parametrize(
    "listed",
    [
        "age",
        [{"name": "age"}],
        [{"name": "gender", "values": ["male", "male"]}],
        [{"name": "age", "values": ["0-9", "10+"], "edges": [10, 20]}],
        [{"name": "gender", "values": ["m", "f"]}, {"name": "gender", "values": ["a", "b"]}],
    ],
)
def test_corrupt_attribute_list_in_manifest(tmp_path, listed):
    data_dir = _with_attrs(tmp_path, torch.zeros(6, 2, dtype=torch.int64))
    manifest = json.loads((data_dir / MANIFEST_FILE).read_text())
    manifest["attributes"] = listed
    (data_dir / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="corrupt manifest") as e:
        load_prepared(data_dir)
    assert "\n" not in str(e.value)


def test_people_dataset_carries_the_drawn_attributes(tmp_path):
    data = load_prepared(people_dataset(tmp_path / "d", per_category=4, size=16, seed=3))
    assert data.attributes.names == ("age", "gender")
    assert data.attributes.get("age").values == ("0-29", "30-59", "60+")
    assert data.attribute_labels.shape == (12, 2) and (data.attribute_labels >= 0).all()
    assert data.attribute_labels[:, 1].tolist().count(1) == 6  # balanced genders
