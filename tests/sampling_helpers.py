"""Shared helpers for the sample/grid/export/demo tests: tiny run folders on disk."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from types import SimpleNamespace

import torch

from facediff.attributes import AttributeSet, age_attribute, gender_attribute
from facediff.categories import DEFAULT_CATEGORIES
from facediff.checkpoint import save_checkpoint
from facediff.config import ModelConfig, TrainConfig
from facediff.loading import LoadedModel
from facediff.model import build_unet, scheduler_config

TINY = ModelConfig(
    block_out_channels=(8, 16),
    layers_per_block=1,
    down_block_types=("DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=8,
    norm_num_groups=8,
    sample_size=16,
    num_categories=3,
)
#: Attributes of the tiny attribute runs: gender (2 values) and age in 3 buckets.
TINY_ATTRIBUTES = AttributeSet((gender_attribute(), age_attribute((20, 40))))
TINY_ATTR = dataclasses.replace(TINY, attribute_sizes=TINY_ATTRIBUTES.sizes)


def save_tiny_checkpoint(
    run: Path,
    step: int,
    model_state: dict,
    ema_state: dict,
    *,
    prediction_type: str = "epsilon",
    data_path: str = "data/faces",
    fingerprint: str = "0" * 64,
    attributes: AttributeSet = AttributeSet(),
) -> Path:
    """One checkpoint of the tiny UNet with the state.json a real run writes (with
    ``attributes``: of the tiny UNet with those attributes)."""
    model = dataclasses.replace(TINY, attribute_sizes=attributes.sizes)
    extra = {"attributes": attributes.to_list()} if attributes else {}
    return save_checkpoint(
        run,
        step,
        model_state=model_state,
        ema_state=ema_state,
        training_state={},
        state={
            "step": step,
            "epoch": 1,
            "images_seen": step * 4,
            "model": model.to_dict(),
            "categories": DEFAULT_CATEGORIES.to_list(),
            "scheduler": scheduler_config(
                num_train_timesteps=1000,
                beta_schedule="squaredcos_cap_v2",
                prediction_type=prediction_type,
            ),
            "train": TrainConfig(preset="tiny").to_dict(),
            "data": {"path": data_path, "fingerprint": fingerprint},
            **extra,
        },
    )


def make_run(
    run: Path, *, steps: tuple[int, ...] = (10,), prediction_type: str = "epsilon", seed: int = 0
) -> Path:
    """A run folder with checkpoints of a randomly initialised tiny UNet (EMA != raw)."""
    for step in steps:
        torch.manual_seed(seed + step)
        model = build_unet(TINY)
        ema = {k: v + 0.01 if v.is_floating_point() else v for k, v in model.state_dict().items()}
        # Make class embeddings distinct and large enough to matter.
        ema["class_embedding.weight"] = torch.randn_like(ema["class_embedding.weight"])
        save_tiny_checkpoint(run, step, model.state_dict(), ema, prediction_type=prediction_type)
    return run


def make_attribute_run(run: Path, *, step: int = 10, seed: int = 0) -> Path:
    """A run folder with one checkpoint of a tiny UNet conditioned on
    :data:`TINY_ATTRIBUTES`, its class and attribute rows large enough to matter."""
    torch.manual_seed(seed)
    model = build_unet(TINY_ATTR)
    state = model.state_dict()
    state["class_embedding.weight"] = 3 * torch.randn_like(state["class_embedding.weight"])
    save_tiny_checkpoint(run, step, state, state, attributes=TINY_ATTRIBUTES)
    return run


#: Settings for sampling a fake UNet (below): the whole model at every step, as the deep
#: cache (the default, 3) splits a UNet2DModel's blocks, which the fakes do not have.
EXACT = {"deep_cache": 1}


class LinearFakeUNet(torch.nn.Module):
    """A deterministic per-pixel stand-in for the UNet, linear in its class embedding.

    It is the exact ε-predictor for data ~ N(μ_c, s²) per pixel with μ_c = 0.1·E[c]
    under the cosine schedule (so samples land near μ_c instead of saturating), and is
    elementwise: bit-exact whatever the batch shape. Being linear in E[c], compose and
    blend guidance can be checked against closed forms.
    """

    def __init__(self, num_labels: int = 4, spread: float = 0.5, eps_error: float = 0.0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.class_embedding = torch.nn.Embedding(num_labels, 3)
        self.class_embedding.weight.data = torch.randn(num_labels, 3, generator=g)
        self.spread = spread
        self.eps_error = eps_error  # a constant error added to ε (an imperfect model)
        self.calls: list[tuple[int, list[int]]] = []

    @staticmethod
    def alpha_bar(t: torch.Tensor) -> torch.Tensor:
        f = lambda u: torch.cos((u / 1000.0 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        return (f(t) / f(torch.zeros(()))).clamp(1e-5, 0.9999)

    def forward(self, sample, timestep, class_labels=None, return_dict=True):
        self.calls.append((sample.shape[0], class_labels.tolist()))
        ab = self.alpha_bar(torch.as_tensor(timestep, dtype=torch.float64)).float()
        mu = 0.1 * self.class_embedding(class_labels)[:, :, None, None].to(sample.dtype)
        s2 = self.spread**2
        out = (1 - ab).sqrt() * (sample - ab.sqrt() * mu) / (ab * s2 + 1 - ab) + self.eps_error
        return (out,) if not return_dict else SimpleNamespace(sample=out)


def fake_loaded(schedule: dict, **unet_kw) -> LoadedModel:
    """A loaded model of the default categories whose UNet is a :class:`LinearFakeUNet`."""
    return LoadedModel(
        unet=LinearFakeUNet(DEFAULT_CATEGORIES.null_label + 1, **unet_kw),
        categories=DEFAULT_CATEGORIES,
        model_config=TINY,
        scheduler_config=schedule,
        step=0,
        source=None,
        weights="ema",
    )


def invoke(args: list[str]):
    """Run the CLI in-process; returns the CliRunner result."""
    from typer.testing import CliRunner

    from facediff.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def error_lines(result) -> list[str]:
    """The ``facediff: error:`` lines of a CLI result (stdout and stderr together)."""
    text = result.output + (getattr(result, "stderr", "") or "")
    assert "Traceback" not in text
    return sorted({ln for ln in text.splitlines() if ln.startswith("facediff: error:")})
