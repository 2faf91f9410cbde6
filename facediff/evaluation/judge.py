"""The judge: a category classifier trained from scratch on the prepared data.

``facediff evaluate`` needs to know which category a generated face looks like. No
downloaded weights are used: a small ResNet (He et al. 2016, "Deep Residual Learning";
torchvision's ``BasicBlock`` with a 3×3 stem and no max-pool, as for CIFAR-sized images)
is trained on a deterministic, stratified train / held-out split of the prepared data.
Its held-out accuracy says how far its verdicts on samples can be trusted.

When the data carries attributes (:mod:`facediff.attributes`: gender, age bucket), the
judge has one more linear head per attribute on the same features, trained jointly and
only on known labels (``-1`` is masked from the loss), with its own held-out accuracy.

The judge is cached in ``<run>/judge/``: ``judge.safetensors`` (weights) and
``judge.json`` (config, split, data fingerprint, held-out accuracies). It is reused
when the data fingerprint and the requested settings match.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from torchvision.models.resnet import BasicBlock

from facediff.attributes import AttributeSet
from facediff.categories import CategoryMap
from facediff.dataset import PreparedData
from facediff.device import autocast, enable_fast_math, resolve_precision
from facediff.errors import FacediffError
from facediff.files import atomic_path, write_json_atomic
from facediff.progress import Progress, ProgressCallback, emit

JUDGE_DIR = "judge"
JUDGE_WEIGHTS = "judge.safetensors"
JUDGE_INFO = "judge.json"
JUDGE_VERSION = 1


@dataclass(frozen=True)
class JudgeConfig:
    """How the judge is built and trained. ``None`` fields are chosen from the data/device
    (and a cached judge is accepted whatever it used for them)."""

    width: int | None = None  # channels of the first stage; None: 64 on CUDA, 16 on the CPU
    blocks: tuple[int, ...] = (1, 1, 1, 1)  # BasicBlocks per stage (2,2,2,2 = ResNet-18)
    epochs: int | None = None  # None: sized by the data (see auto_epochs)
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    heldout_fraction: float = 0.15
    seed: int = 0
    precision: str = "auto"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class JudgeNet(nn.Module):
    """A narrow ResNet for small images: 3×3 stem, no max-pool, stages of BasicBlocks;
    ``fc`` predicts the category, ``attribute_heads[name]`` each attribute (if any)."""

    def __init__(
        self,
        num_classes: int,
        width: int = 32,
        blocks: tuple[int, ...] = (1, 1, 1, 1),
        attributes: dict[str, int] | None = None,  # name -> number of values
    ):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(True)
        )
        stages, cin = [], width
        for i, n in enumerate(blocks):
            cout, stride = width * 2**i, (1 if i == 0 else 2)
            layers = []
            for j in range(n):
                s = stride if j == 0 else 1
                down = None
                if s != 1 or cin != cout:
                    down = nn.Sequential(
                        nn.Conv2d(cin, cout, 1, stride=s, bias=False), nn.BatchNorm2d(cout)
                    )
                layers.append(BasicBlock(cin, cout, stride=s, downsample=down))
                cin = cout
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(cin, num_classes)
        self.feature_dim = cin
        # Absent without attributes, so a judge cached before attributes existed loads as is.
        if attributes:
            self.attribute_heads = nn.ModuleDict(
                {name: nn.Linear(cin, n) for name, n in attributes.items()}
            )
        else:
            self.attribute_heads = None

    def attribute_logits(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.attribute_heads is None:
            return {}
        return {name: head(features) for name, head in self.attribute_heads.items()}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features (global average pool), ``N×feature_dim``."""
        return self.stages(self.stem(x)).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``N×3×S×S`` → float in [-1, 1]."""
    return images.float().div(127.5).sub(1.0)


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


def auto_epochs(n_train: int) -> int:
    """About 200k images seen, between 8 and 30 epochs (15 epochs for 13k photos)."""
    return int(min(30, max(8, round(200_000 / max(n_train, 1)))))


def resolve_config(config: JudgeConfig, n_train: int, device: torch.device) -> JudgeConfig:
    width = config.width or (64 if device.type == "cuda" else 16)
    epochs = config.epochs or auto_epochs(n_train)
    return dataclasses.replace(config, width=width, epochs=epochs)


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random flip, small scale/shift crop (one ``grid_sample``) and mild colour jitter."""
    n, dev = x.shape[0], x.device

    def u(lo: float, hi: float) -> torch.Tensor:
        return (torch.rand(n, generator=g) * (hi - lo) + lo).to(dev)

    scale = u(0.85, 1.0)
    flip = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0).to(dev)
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 1, 1] = scale * flip, scale
    theta[:, 0, 2], theta[:, 1, 2] = u(-0.08, 0.08), u(-0.08, 0.08)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * u(0.9, 1.1).view(n, 1, 1, 1) + mean  # contrast
    gray = x.mean(dim=1, keepdim=True)
    x = (x - gray) * u(0.9, 1.1).view(n, 1, 1, 1) + gray  # saturation
    x = x + u(-0.1, 0.1).view(n, 1, 1, 1)  # brightness (0.1 in [-1,1] units = ±5%)
    return x.clamp(-1, 1)


def _class_weights(labels: torch.Tensor, k: int) -> torch.Tensor:
    """Inverse-frequency loss weights (mean 1 over the data), so rare classes count as much.
    Unknown labels (-1) are left out."""
    labels = labels[labels >= 0]
    if len(labels) == 0:
        return torch.ones(k)
    counts = torch.bincount(labels, minlength=k).float().clamp(min=1)
    w = 1.0 / counts
    return w * len(labels) / (w[labels].sum())


def _attribute_loss(
    logits: dict[str, torch.Tensor], targets: torch.Tensor, weights: list[torch.Tensor]
) -> torch.Tensor:
    """Sum over attributes of the class-balanced cross-entropy on the known labels only."""
    total = torch.zeros((), device=targets.device)
    for j, out in enumerate(logits.values()):
        y = targets[:, j]
        known = y >= 0
        if bool(known.any()):  # all unknown: no term (cross_entropy would give nan)
            total = total + F.cross_entropy(out.float()[known], y[known], weight=weights[j])
    return total


def train_judge(
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    config: JudgeConfig,
    device: torch.device,
    progress: ProgressCallback | None = None,
    *,
    attributes: AttributeSet | None = None,
    attribute_labels: torch.Tensor | None = None,
) -> JudgeNet:
    """Train a :class:`JudgeNet` (AdamW, one-cycle LR, class-balanced loss, autocast).

    With ``attributes`` (and ``attribute_labels``, N×A with -1 unknown) each attribute's
    head adds its class-balanced cross-entropy over the known labels to the loss."""
    attributes = attributes or AttributeSet()
    if attributes and attribute_labels is None:
        raise ValueError("attribute_labels are needed with attributes")
    torch.manual_seed(config.seed)
    g = torch.Generator().manual_seed(config.seed + 1)
    enable_fast_math(device)
    dtype = resolve_precision(config.precision, device)
    heads = {a.name: len(a.values) for a in attributes}
    net = JudgeNet(num_classes, config.width or 16, config.blocks, heads).to(device)
    if device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    data, y = images.to(device), labels.to(device)  # uint8 stays small on the device
    n = len(y)
    batch = min(config.batch_size, max(16, n // 8))  # ≥ 8 steps per epoch on small sets
    steps_per_epoch = max(1, n // batch)
    total = steps_per_epoch * (config.epochs or 1)
    opt = torch.optim.AdamW(
        net.parameters(), lr=config.lr, weight_decay=config.weight_decay,
        fused=device.type == "cuda",
    )  # fmt: skip
    # OneCycleLR divides by (pct_start × total − 1): 0.2 of 5 steps would be 0/0, so very
    # short runs warm up for 0.45 of their steps (never a whole step count).
    pct_start = 0.2 if total >= 8 else 0.45
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, config.lr, total_steps=total, pct_start=pct_start
    )
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    weights = _class_weights(labels, num_classes).to(device)
    if attributes:
        attr_y = attribute_labels.to(device)  # type: ignore[union-attr]
        attr_w = [
            _class_weights(attribute_labels[:, j], len(a.values)).to(device)  # type: ignore[index]
            for j, a in enumerate(attributes)
        ]
    net.train()
    step = 0
    for _epoch in range(config.epochs or 1):
        perm = torch.randperm(n, generator=g).to(device)
        for b in range(steps_per_epoch):
            idx = perm[b * batch : (b + 1) * batch]
            x = augment(to_input(data[idx]), g)
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device, dtype):
                feats = net.features(x)
                loss = F.cross_entropy(net.fc(feats).float(), y[idx], weight=weights)
                if attributes:
                    logits = net.attribute_logits(feats)
                    loss = loss + _attribute_loss(logits, attr_y[idx], attr_w)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            step += 1
            if step % 10 == 0 or step == total:
                emit(progress, Progress("judge", step, total, {"loss": float(loss.detach())}))
    return net.eval()


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
    "JudgeConfig",
    "JudgeNet",
    "attribute_accuracy",
    "attribute_cells",
    "augment",
    "auto_epochs",
    "heldout_accuracy",
    "load_or_train_judge",
    "split_indices",
    "train_judge",
]
