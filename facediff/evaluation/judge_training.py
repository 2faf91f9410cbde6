"""The judge's network and its training (:mod:`facediff.evaluation.judge` caches and uses it).

A small ResNet (He et al. 2016, "Deep Residual Learning"; torchvision's ``BasicBlock``
with a 3×3 stem and no max-pool, as for CIFAR-sized images) trained from scratch with
AdamW, a one-cycle learning rate, class-balanced cross-entropy and light augmentation.
With attributes, one more linear head per attribute on the same features is trained
jointly, only on known labels (``-1`` is masked from the loss).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock

from facediff.attributes import AttributeSet
from facediff.device import autocast, enable_fast_math, resolve_precision
from facediff.progress import Progress, ProgressCallback, emit


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


__all__ = [
    "JudgeConfig",
    "JudgeNet",
    "augment",
    "auto_epochs",
    "resolve_config",
    "to_input",
    "train_judge",
]
