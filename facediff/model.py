"""The denoiser: a class-conditional ``diffusers.UNet2DModel`` (docs/architecture.md)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any

import torch
from diffusers import UNet2DModel

from facediff.attributes import embedding_sizes
from facediff.config import ModelConfig
from facediff.guidance import attach_attributes


def build_unet(cfg: ModelConfig) -> UNet2DModel:
    """A UNet with ``num_categories + 1`` class embeddings (the last one is the null
    class) and, with attributes, each attribute's values and null after them, summed
    by :class:`facediff.guidance.SummedEmbedding`."""
    sizes = embedding_sizes(cfg.num_categories, cfg.attribute_sizes)
    unet = UNet2DModel(
        sample_size=cfg.sample_size,
        in_channels=3,
        out_channels=3,
        layers_per_block=cfg.layers_per_block,
        block_out_channels=tuple(cfg.block_out_channels),
        down_block_types=tuple(cfg.down_block_types),
        up_block_types=tuple(cfg.up_block_types),
        attention_head_dim=cfg.attention_head_dim,
        norm_num_groups=cfg.norm_num_groups,
        dropout=cfg.dropout,
        resnet_time_scale_shift=cfg.resnet_time_scale_shift,
        num_class_embeds=sum(sizes),
    )
    return attach_attributes(unet, sizes)


@contextlib.contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Modules built inside get their parameters on the meta device, so nothing is
    initialised (seconds for a large UNet); buffers stay real, since those outside the state
    dict are not loaded (accelerate's ``init_empty_weights``). ``torch.nn.init`` leaves meta
    tensors alone meanwhile: some of its fills (``normal_``) reach meta tensors through
    PyTorch's Python reference kernels, which import the compiler (``torch._dynamo``)."""
    register = torch.nn.Module.register_parameter

    def on_meta(module: torch.nn.Module, name: str, param: torch.nn.Parameter | None) -> None:
        if param is not None and not param.is_meta:
            param = torch.nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register(module, name, param)

    def skip_meta(fill: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        @functools.wraps(fill)
        def filled(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            return tensor if tensor.is_meta else fill(tensor, *args, **kwargs)

        return filled

    init = torch.nn.init
    fills = {n: f for n, f in vars(init).items() if n.endswith("_") and not n.startswith("_")}
    torch.nn.Module.register_parameter = on_meta  # type: ignore[method-assign]
    for name, fill in fills.items():
        setattr(init, name, skip_meta(fill))
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register  # type: ignore[method-assign]
        for name, fill in fills.items():
            setattr(init, name, fill)


def meta_unet(cfg: ModelConfig) -> torch.nn.Module:
    """:func:`build_unet` on the meta device (shapes only: no memory, no arithmetic), in
    eval mode: for counting what a forward pass of ``cfg`` would hold."""
    with torch.device("meta"), parameters_on_meta():  # nn.init would import the compiler
        unet = build_unet(cfg)
    return unet.eval().requires_grad_(False)


def unet_inputs(
    cfg: ModelConfig,
    rows: int,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "meta",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(sample, timestep, class_labels)`` of ``rows`` rows of zeros on ``device``, shaped
    as sampling and training call the UNet (labels N×(1+A) with attributes)."""
    size = cfg.sample_size
    width = (rows, 1 + len(cfg.attribute_sizes)) if cfg.attribute_sizes else (rows,)
    return (
        torch.zeros((rows, 3, size, size), device=device, dtype=dtype),
        torch.zeros(rows, dtype=torch.long, device=device),
        torch.zeros(width, dtype=torch.long, device=device),
    )


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def scheduler_config(
    *, num_train_timesteps: int, beta_schedule: str, prediction_type: str
) -> dict[str, Any]:
    """The noise schedule recorded in the run config and shared by every sampler."""
    return {
        "num_train_timesteps": num_train_timesteps,
        "beta_schedule": beta_schedule,
        "prediction_type": prediction_type,
        "clip_sample": False,
    }
