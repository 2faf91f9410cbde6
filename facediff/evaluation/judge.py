"""The judge: a category classifier trained from scratch on the prepared data.

``facediff evaluate`` needs to know which category a generated face looks like. No
downloaded weights are used: a small ResNet (He et al. 2016, "Deep Residual Learning";
torchvision's ``BasicBlock`` with a 3×3 stem and no max-pool, as for CIFAR-sized images)
is trained on a deterministic, stratified train / held-out split of the prepared data.
Its held-out accuracy says how far its verdicts on samples can be trusted. The network and
its training are :mod:`facediff.evaluation.judge_training`; this module holds the split,
the held-out accuracies and the cache.

When the data carries attributes (:mod:`facediff.attributes`: gender, age bucket), the
judge has one more linear head per attribute on the same features, trained jointly and
only on known labels (``-1`` is masked from the loss), with its own held-out accuracy.

The judge is cached in ``<run>/judge/``: ``judge.safetensors`` (weights) and
``judge.json`` (config, split, data fingerprint, held-out accuracies). It is reused
when the data fingerprint and the requested settings match.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from facediff import folder_lock
from facediff.attributes import AttributeSet
from facediff.categories import CategoryMap
from facediff.dataset import PreparedData
from facediff.device import resolve_precision
from facediff.errors import FacediffError
from facediff.evaluation.judge_training import (
    JudgeConfig,
    JudgeNet,
    resolve_config,
    to_input,
    train_judge,
)
from facediff.files import atomic_path, write_json_atomic
from facediff.progress import Progress, ProgressCallback, emit

JUDGE_DIR = "judge"
JUDGE_WEIGHTS = "judge.safetensors"
JUDGE_INFO = "judge.json"
JUDGE_VERSION = 1


def split_indices(
    labels: torch.Tensor, heldout_fraction: float, seed: int, cells: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic stratified split: per class, a seeded permutation of its indices puts
    ``round(fraction × count)`` images (at least one when the class has two) in held-out.

    With ``cells`` (an attribute cell key per image, see :func:`attribute_cells`) the
    class's held-out images are drawn evenly across its cells instead of from the front
    of the permutation: the permutation is sorted (stably) by cell and every
    ``count / n_held``-th image is held out, so each cell is held out in proportion."""
    g = torch.Generator().manual_seed(seed)
    train, held = [], []
    for k in range(int(labels.max()) + 1):
        idx = torch.nonzero(labels == k).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_held = round(heldout_fraction * len(idx))
        n_held = min(max(n_held, 1), len(idx) - 1) if len(idx) >= 2 else 0
        if cells is not None and n_held:
            idx = idx[torch.sort(cells[idx], stable=True).indices]
            picked = torch.zeros(len(idx), dtype=torch.bool)
            picked[((torch.arange(n_held) + 0.5) * len(idx) / n_held).long()] = True
            held.append(idx[picked])
            train.append(idx[~picked])
            continue
        held.append(idx[:n_held])
        train.append(idx[n_held:])
    return torch.cat(train).sort().values, torch.cat(held).sort().values


def attribute_cells(data: PreparedData) -> torch.Tensor | None:
    """Each image's attribute cell (the combination of its attribute values, unknown
    counting as a value) as one integer; None for data without attributes."""
    if data.attribute_labels is None:
        return None
    key = torch.zeros(len(data), dtype=torch.int64)
    for j, a in enumerate(data.attributes):
        column = data.attribute_labels[:, j]
        key = key * (len(a.values) + 1) + torch.where(column < 0, a.null, column)
    return key


@dataclass
class Judge:
    """A trained judge with what is needed to interpret and trust it."""

    net: JudgeNet
    categories: CategoryMap
    size: int
    info: dict[str, Any]  # the contents of judge.json
    trained: bool  # True if trained by this call, False if loaded from the cache
    device: torch.device

    @property
    def heldout_indices(self) -> torch.Tensor:
        return torch.tensor(self.info["split"]["heldout_indices"], dtype=torch.int64)

    @property
    def train_indices(self) -> torch.Tensor:
        return torch.tensor(self.info["split"]["train_indices"], dtype=torch.int64)

    @property
    def attributes(self) -> AttributeSet:
        """The attributes the judge predicts (empty for a judge of data without them)."""
        return AttributeSet.from_list(self.info.get("attributes"))

    def run(self, images: torch.Tensor, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
        """(probabilities ``N×K``, penultimate features ``N×D``), float32 on the CPU.

        Images (uint8) are resized to the judge's resolution when they differ."""
        probs, feats, _ = self.run_all(images, batch_size)
        return probs, feats

    @torch.no_grad()
    def run_all(
        self, images: torch.Tensor, batch_size: int = 512
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """:meth:`run` plus each attribute's probabilities (``N×V``, by name)."""
        probs, feats = [], []
        attrs: dict[str, list[torch.Tensor]] = {a.name: [] for a in self.attributes}
        for start in range(0, images.shape[0], batch_size):
            x = to_input(images[start : start + batch_size].to(self.device))
            if x.shape[-1] != self.size or x.shape[-2] != self.size:
                x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True)
            if self.device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            # fp32 (TF32 on CUDA) rather than autocast: features feed distance metrics.
            f = self.net.features(x)
            logits = self.net.fc(f)
            probs.append(logits.float().softmax(dim=1).cpu())
            feats.append(f.float().cpu())
            for name, out in self.net.attribute_logits(f).items():
                attrs[name].append(out.float().softmax(dim=1).cpu())
        if not probs:
            empty = {a.name: torch.zeros(0, len(a.values)) for a in self.attributes}
            return torch.zeros(0, len(self.categories)), torch.zeros(0, self.net.feature_dim), empty
        return torch.cat(probs), torch.cat(feats), {k: torch.cat(v) for k, v in attrs.items()}


def heldout_accuracy(
    probs: torch.Tensor, labels: torch.Tensor, categories: CategoryMap
) -> dict[str, Any]:
    """Overall, balanced and per-category accuracy plus the confusion matrix."""
    k = len(categories)
    pred = probs.argmax(dim=1)
    confusion = torch.zeros(k, k, dtype=torch.int64)
    confusion.index_put_((labels, pred), torch.ones_like(labels), accumulate=True)
    per = {}
    for i, c in enumerate(categories):
        n = int(confusion[i].sum())
        per[c.code] = {"name": c.name, "n": n, "accuracy": int(confusion[i, i]) / n if n else None}
    accs = [v["accuracy"] for v in per.values() if v["accuracy"] is not None]
    return {
        "overall": float((pred == labels).float().mean()) if len(labels) else None,
        "balanced": float(np.mean(accs)) if accs else None,
        "per_category": per,
        "confusion": confusion.tolist(),  # rows: true category, columns: predicted
    }


def _value_accuracy(pred: torch.Tensor, truth: torch.Tensor) -> dict[str, Any]:
    n = len(truth)
    return {"n": n, "accuracy": float((pred == truth).float().mean()) if n else None}


def attribute_accuracy(
    probs: dict[str, torch.Tensor],
    attribute_labels: torch.Tensor,
    category_labels: torch.Tensor,
    attributes: AttributeSet,
    categories: CategoryMap,
) -> dict[str, dict[str, Any]]:
    """Per attribute, on the images whose label is known: overall and balanced accuracy,
    accuracy per value and per category × value, and the confusion matrix."""
    out = {}
    for j, a in enumerate(attributes):
        truth = attribute_labels[:, j]
        known = truth >= 0
        y, pred, cat = truth[known], probs[a.name][known].argmax(dim=1), category_labels[known]
        v = len(a.values)
        confusion = torch.zeros(v, v, dtype=torch.int64)
        confusion.index_put_((y, pred), torch.ones_like(y), accumulate=True)
        per_value = {
            name: _value_accuracy(pred[y == i], y[y == i]) for i, name in enumerate(a.values)
        }
        per_category = {
            c.code: {
                name: _value_accuracy(pred[(cat == k) & (y == i)], y[(cat == k) & (y == i)])
                for i, name in enumerate(a.values)
            }
            for k, c in enumerate(categories)
        }
        accs = [r["accuracy"] for r in per_value.values() if r["accuracy"] is not None]
        out[a.name] = {
            "values": list(a.values),
            "n": len(y),
            "unknown": int((~known).sum()),
            "overall": float((pred == y).float().mean()) if len(y) else None,
            "balanced": float(np.mean(accs)) if accs else None,
            "per_value": per_value,
            "per_category": per_category,
            "confusion": confusion.tolist(),  # rows: true value, columns: predicted
        }
    return out


def _indices_sha(idx: torch.Tensor) -> str:
    return hashlib.sha256(np.asarray(idx.tolist(), dtype=np.int64).tobytes()).hexdigest()


def _cache_matches(info: dict[str, Any], data: PreparedData, config: JudgeConfig) -> bool:
    if info.get("version") != JUDGE_VERSION:
        return False
    if info.get("data", {}).get("fingerprint") != data.fingerprint:
        return False
    if info.get("categories") != data.categories.to_list():
        return False
    if info.get("attributes", []) != data.attributes.to_list():
        return False  # judges cached before attributes existed have none
    cached = info.get("config", {})
    for key, want in config.to_dict().items():
        if want is None or key == "precision":
            continue
        have = cached.get(key)
        if (list(want) if isinstance(want, tuple) else want) != have:
            return False
    return True


def _read_cache(judge_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((judge_dir / JUDGE_INFO).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _load_cached(
    judge_dir: Path, info: dict[str, Any], data: PreparedData, device: torch.device
) -> Judge | None:
    try:
        cfg = info["config"]
        heads = {a.name: len(a.values) for a in data.attributes}
        net = JudgeNet(len(data.categories), int(cfg["width"]), tuple(cfg["blocks"]), heads)
        net.load_state_dict(load_file(str(judge_dir / JUDGE_WEIGHTS)))
    except (SafetensorError, OSError, RuntimeError, ValueError, KeyError, TypeError):
        return None  # a damaged or unreadable cache is simply retrained
    net = net.to(device).eval()
    if device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    return Judge(net, data.categories, data.size, info, False, device)


def load_or_train_judge(
    run_dir: Path,
    data: PreparedData,
    config: JudgeConfig | None = None,
    *,
    device: torch.device,
    progress: ProgressCallback | None = None,
) -> Judge:
    """The run's cached judge if it was trained on this data with these settings, else a
    newly trained one (saved to ``<run>/judge/``)."""
    config = config or JudgeConfig()
    judge_dir = Path(run_dir) / JUDGE_DIR
    resolve_precision(config.precision, device)  # a bad --precision fails before training

    def waiting(holder: str) -> None:
        message = f"waiting for {holder}, which is training the judge in {judge_dir}"
        emit(progress, Progress("judge", 0, None, message=message))

    # one judge trainer per cache: a second evaluate waits for the first's judge and
    # loads it, instead of training it again and writing the same files meanwhile
    with folder_lock.writing(judge_dir, wait_s=math.inf, waiting=waiting):
        return _load_or_train(judge_dir, data, config, device, progress)


def _load_or_train(
    judge_dir: Path,
    data: PreparedData,
    config: JudgeConfig,
    device: torch.device,
    progress: ProgressCallback | None,
) -> Judge:
    info = _read_cache(judge_dir)
    if info is not None and _cache_matches(info, data, config):
        judge = _load_cached(judge_dir, info, data, device)
        if judge is not None:
            return judge
    train_idx, held_idx = split_indices(
        data.labels, config.heldout_fraction, config.seed, attribute_cells(data)
    )
    if len(train_idx) == 0:
        raise FacediffError("too few images to train the judge")
    cfg = resolve_config(config, len(train_idx), device)
    start = time.perf_counter()
    emit(progress, Progress("judge", 0, None, message=f"training the judge ({cfg.epochs} epochs)"))
    attr_labels = data.attribute_labels
    net = train_judge(
        data.images[train_idx],
        data.labels[train_idx],
        len(data.categories),
        cfg,
        device,
        progress,
        attributes=data.attributes,
        attribute_labels=None if attr_labels is None else attr_labels[train_idx],
    )
    seconds = time.perf_counter() - start
    judge = Judge(
        net, data.categories, data.size, {"attributes": data.attributes.to_list()}, True, device
    )
    held_probs, _, held_attr = judge.run_all(data.images[held_idx])
    judge.info = {
        "version": JUDGE_VERSION,
        "data": {"path": str(data.path), "fingerprint": data.fingerprint, "count": len(data)},
        "categories": data.categories.to_list(),
        "size": data.size,
        "config": {**cfg.to_dict(), "blocks": list(cfg.blocks)},
        "split": {
            "method": "stratified seeded permutation per category",
            "seed": cfg.seed,
            "heldout_fraction": cfg.heldout_fraction,
            "train_count": len(train_idx),
            "heldout_count": len(held_idx),
            "heldout_sha256": _indices_sha(held_idx),
            "heldout_indices": held_idx.tolist(),
            "train_indices": train_idx.tolist(),
        },
        "heldout_accuracy": heldout_accuracy(held_probs, data.labels[held_idx], data.categories),
        "train_seconds": round(seconds, 2),
        "device": str(device),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if data.attributes:
        judge.info["attributes"] = data.attributes.to_list()
        judge.info["attribute_accuracy"] = attribute_accuracy(
            held_attr,
            attr_labels[held_idx],  # type: ignore[index]
            data.labels[held_idx],
            data.attributes,
            data.categories,
        )
    _save(judge_dir, judge)
    return judge


def _save(judge_dir: Path, judge: Judge) -> None:
    judge_dir.mkdir(parents=True, exist_ok=True)
    (judge_dir / JUDGE_INFO).unlink(missing_ok=True)  # never old info beside new weights
    sd = {k: v.detach().cpu().contiguous() for k, v in judge.net.state_dict().items()}
    with atomic_path(judge_dir / JUDGE_WEIGHTS) as tmp:
        save_file(sd, str(tmp))
    write_json_atomic(judge_dir / JUDGE_INFO, judge.info)


__all__ = [
    "Judge",
    "attribute_accuracy",
    "attribute_cells",
    "heldout_accuracy",
    "load_or_train_judge",
    "split_indices",
]
