"""Loading a model for sampling from a run folder, a checkpoint or an export.

The checkpoint folder itself (saving, listing, checksums) is :mod:`facediff.checkpoint`;
this module builds the UNet from a checkpoint's recorded config without initialising it
(parameters on the meta device) and takes its verified weights, cast to the dtype asked for.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from facediff.attributes import AttributeSet
from facediff.categories import CategoryMap
from facediff.checkpoint import (
    EMA_FILE,
    MODEL_FILE,
    STATE_FILE,
    load_weights,
    resolve_checkpoint,
    verify_checkpoint,
)
from facediff.config import ModelConfig
from facediff.errors import CheckpointError, FacediffError, first_line
from facediff.model import build_unet, parameters_on_meta

if TYPE_CHECKING:
    from facediff.mix import Mix


@dataclass
class LoadedModel:
    """A model ready for sampling, with what is needed to interpret it."""

    unet: torch.nn.Module
    categories: CategoryMap
    model_config: ModelConfig
    scheduler_config: dict[str, Any]
    step: int
    source: Path  # the checkpoint or export folder it came from
    weights: str  # "ema", "model" or "export"
    warnings: list[str] = field(default_factory=list)  # e.g. a damaged newer checkpoint skipped
    #: The attributes the model is conditioned on (empty for runs without, and old ones);
    #: then ``unet`` takes labels N×(1+A) (category, then each value index or its null).
    attributes: AttributeSet = field(default_factory=AttributeSet)
    #: Training images per category code as ``train`` recorded them (None: not recorded,
    #: as by runs trained before it recorded them); :meth:`notes` warns about a category
    #: with none.
    training_counts: dict[str, int] | None = None

    def __post_init__(self) -> None:
        self.unet.eval().requires_grad_(False)

    def never_trained(self, mixes: Iterable[Mix] | None = None) -> list[str]:
        """The codes, once each, of the categories in ``mixes`` (every category when None)
        the model has no training image of; none when it did not record its counts."""
        counts = self.training_counts or {}
        indices = (
            range(len(self.categories))
            if mixes is None
            else [k for mix in mixes for k in mix.indices]
        )
        codes = [self.categories[k].code for k in indices]
        return [c for i, c in enumerate(codes) if counts.get(c) == 0 and c not in codes[:i]]

    def notes(self, mixes: Iterable[Mix] | None = None) -> list[str]:
        """``warnings``, then one for each category the model never trained on among those
        ``mixes`` draw (every category when None): a command warns about what it draws."""
        named = [self.categories[self.categories.index(c)] for c in self.never_trained(mixes)]
        return [*self.warnings] + [
            f"warning: the model never trained on an image of {c.name} ({c.code}): "
            f"{c.code} samples and mixes with {c.code} come from an untrained label"
            for c in named
        ]


def recorded_counts(counts: Any, categories: CategoryMap) -> dict[str, int] | None:
    """Training images per category code, from ``state.json``'s ``data.counts`` (a dict by
    code) or an export's ``training_counts`` (a list in label order); None when absent or
    not one count per category."""
    codes = [c.code for c in categories]
    if isinstance(counts, list) and len(counts) == len(codes):
        counts = dict(zip(codes, counts))
    if not isinstance(counts, dict) or sorted(counts) != sorted(codes):
        return None
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts.values()):
        return None
    return {code: counts[code] for code in codes}


def recorded_attributes(info: dict[str, Any], model_cfg: ModelConfig) -> AttributeSet:
    """The attribute set a run's ``state.json`` or an export's ``facediff.json`` records
    (absent: none), checked against the model's ``attribute_sizes``. ``ValueError`` when
    malformed or inconsistent."""
    attributes = AttributeSet.from_list(info.get("attributes"))
    if attributes.sizes != tuple(model_cfg.attribute_sizes):
        raise ValueError(
            f"attributes {list(attributes.names)} do not match the model's attribute sizes "
            f"{list(model_cfg.attribute_sizes)}"
        )
    return attributes


def load_for_inference(
    path: Path,
    *,
    step: int | None = None,
    use_ema: bool = True,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> LoadedModel:
    """Load a model from a run folder (newest intact checkpoint), a checkpoint folder or an
    export. Weights are checked against their recorded checksum before use.

    A checkpoint's UNet is built without initialising weights (parameters on the meta device) and
    takes the file's tensors as they are read onto ``device`` (default: the CPU), cast to
    ``dtype`` (default: as stored), so sampling on a GPU never makes an fp32 CPU copy.
    """
    from facediff.exporting import EXPORT_INFO_FILE, load_export  # it imports this module

    path = Path(path)
    if (path / EXPORT_INFO_FILE).is_file():
        return load_export(path)
    weights_file = EMA_FILE if use_ema else MODEL_FILE
    if (path / STATE_FILE).is_file():
        ckpt, state, warnings = path, verify_checkpoint(path, (weights_file,)), []
    else:
        ckpt, state, warnings = resolve_checkpoint(path, step, (weights_file,))
    try:
        model_cfg = ModelConfig.from_dict(state["model"])
        categories = CategoryMap.from_list(state["categories"])
        sched = dict(state["scheduler"])
        attributes = recorded_attributes(state, model_cfg)
    except (KeyError, TypeError, ValueError, AttributeError, FacediffError) as e:
        raise CheckpointError(f"checkpoint {ckpt} lacks a valid run config ({e})") from None
    try:
        with parameters_on_meta():  # no random initialisation: the weights replace it
            unet = build_unet(model_cfg)  # with attributes: the summed class embedding attached
    except Exception as e:  # diffusers rejects a bad architecture with many error types
        raise CheckpointError(
            f"checkpoint {ckpt} has an invalid model config ({first_line(e)})"
        ) from None
    weights = load_weights(ckpt / weights_file, device)
    if dtype is not None:
        weights = {k: v.to(dtype) if v.is_floating_point() else v for k, v in weights.items()}
    try:
        unet.load_state_dict(weights, assign=True)
        left = [n for n, t in (*unet.named_parameters(), *unet.named_buffers()) if t.is_meta]
        if left:
            raise RuntimeError(f"no weights for {', '.join(left[:3])}")
        if device is not None:  # buffers outside the state dict (built on the CPU)
            torch.nn.Module.to(unet, device=device)
    except RuntimeError as e:
        raise CheckpointError(
            f"weights in {ckpt} do not match its config: {first_line(e)}"
        ) from None
    weights_name = "ema" if use_ema else "model"
    step = int(state["step"])
    data = state.get("data")
    counts = recorded_counts(data.get("counts") if isinstance(data, dict) else None, categories)
    return LoadedModel(
        unet, categories, model_cfg, sched, step, ckpt, weights_name, warnings, attributes, counts
    )
