"""Choosing the device and numeric precision (shared by train, sample and evaluate)."""

from __future__ import annotations

import contextlib

import torch

from facediff.config import PRECISIONS
from facediff.errors import FacediffError, invalid


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else the CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise invalid("device", name, "use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FacediffError(f"device {name!r} was asked for but no CUDA GPU is available")
    if dev.type not in ("cpu", "cuda"):
        raise invalid("device", name, "use auto, cpu, cuda or cuda:N")
    return dev


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    """The autocast dtype: bf16 where the GPU supports it, else fp16; fp32 on the CPU.

    Explicit bf16/fp16 on the CPU is honoured for bf16 (CPU autocast supports it) and
    refused for fp16, which CPU autocast does not speed up.
    """
    if name not in PRECISIONS:
        raise invalid("precision", name, f"use {', '.join(PRECISIONS)}")
    if name == "fp32":
        return torch.float32
    if device.type != "cuda":
        if name == "fp16":
            raise FacediffError("precision fp16 needs a CUDA GPU; use bf16 or fp32 on the CPU")
        return torch.bfloat16 if name == "bf16" else torch.float32
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if name == "bf16" and not torch.cuda.is_bf16_supported():
        raise FacediffError("precision bf16 is not supported by this GPU; use fp16")
    return torch.bfloat16 if name == "bf16" else torch.float16


def autocast(device: torch.device, dtype: torch.dtype, *, cache: bool = True):
    """An autocast context for ``dtype`` (a no-op for fp32). ``cache=False`` recasts the
    weights at every use, as CUDA-graph capture needs (no cast cached across replays)."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype, cache_enabled=cache)


def enable_fast_math(device: torch.device, *, autotune: bool = True) -> None:
    """TF32 matmuls on CUDA, and cuDNN autotuning unless ``autotune=False`` (no effect on
    the CPU). Autotuning times every convolution algorithm on each new input shape: it pays
    over a long job and costs a short one seconds (see ``generation.AUTOTUNE_MIN_IMAGES``)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = autotune
