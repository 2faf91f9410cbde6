"""How many images a CPU sampling batch can hold, decided before the first batch runs.

On the CPU a batch too large for the machine is not an error torch can raise: each
allocation succeeds until memory is full, and then the kernel kills the process (exit 137,
no message). Unlike training's (:mod:`facediff.training.memory`), a sampling batch can
always be split: image *i* depends only on its seed (:mod:`facediff.generation`), so
:func:`fitting_batch` lowers ``--batch-size`` to what fits and says so, and the images are
the ones the larger batch would have made.

What a batch needs is, per UNet row (an image runs one row per guidance condition), the
peak of the tensors alive at once during a forward pass. :func:`row_bytes` measures it by
running the loaded UNet once on two rows of zeros and following every tensor from the op
that makes it until it is freed. Real runs need a little more (allocator slack,
convolution workspaces, the deep cache's kept features): ``benchmarks/sample_memory.py``
measured the peak resident memory of ``facediff.sample`` (3 steps, fp32) growing by
1.11–1.32 times the count per row (``tiny`` at 16 and 32 px, ``base`` at 64 px, deep cache
1 and 3; 31.0–33.1 MiB a row for ``base`` at 64 px against 28.0 counted), hence
:data:`MARGIN`.

Following the tensors (a ``TorchDispatchMode``) imports the compiler (about 1.5 s here),
which the command's lean start otherwise keeps out (:mod:`facediff.imports`), and the
forward pass takes 0.1 s for ``tiny`` at 32 px and 1.1 s for ``base`` at 64 px, once per
model in a process (the meta device would save the arithmetic, not the import). So a batch
is first held against an upper bound found without running the UNet (:func:`feature_bytes`
× :data:`FEATURE_MULTIPLE`), and measured only where that bound does not clear it: the
default batch of 64 one-category images of ``base`` at 64 px needs no measuring with 13
GiB free.

A real ``facediff sample --batch-size 400`` of ``base`` at 64 px, sized down to 318 images
a batch with 22.7 GiB available (by a margin of 1.3, since raised), peaked at 19.9 GiB.
What the machine has is :func:`facediff.host_memory.available_bytes`; where that cannot be
told, nothing is checked.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from facediff.config import ModelConfig
from facediff.errors import ConfigError
from facediff.host_memory import available_bytes, format_size

#: Real sampling needs up to this times the counted peak (1.11–1.32 measured, see above).
MARGIN = 1.4
#: A row's counted peak was 7.0–8.3 times its feature maps (:func:`feature_bytes`) for every
#: preset at 32 and 64 px (a test checks each at 32 px): a batch that fits at this multiple
#: of them is not measured.
FEATURE_MULTIPLE = 16


class _LivePeak(TorchDispatchMode):
    """Follows every storage an op creates until its tensor is freed; keeps the peak of
    their bytes. Outputs that share an input's storage (views, in-place ops) add none."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, int] = {}
        self.total = 0
        self.peak = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor):
                continue
            key = t.untyped_storage()._cdata
            if key in self.live:
                continue
            self.live[key] = t.untyped_storage().nbytes()
            self.total += self.live[key]
            self.peak = max(self.peak, self.total)
            weakref.finalize(t, self._free, key)
        return out

    def _free(self, key: int) -> None:
        self.total -= self.live.pop(key, 0)


def feature_bytes(model: ModelConfig, dtype: torch.dtype) -> int:
    """A row's feature maps in ``dtype``: one map per resolution level, of that level's
    width; plus, where a level attends, its attention weights (heads × positions², in case
    they are materialised). :data:`FEATURE_MULTIPLE` times this bounds a row's peak from
    above, found without running the UNet."""
    elements = 0
    for level, (width, block) in enumerate(zip(model.block_out_channels, model.down_block_types)):
        positions = (model.sample_size // 2**level) ** 2
        elements += width * positions
        if "Attn" in block:
            elements += max(1, width // model.attention_head_dim) * positions**2
    return elements * dtype.itemsize


def row_bytes(unet: torch.nn.Module, model: ModelConfig, dtype: torch.dtype) -> int:
    """The peak bytes of tensors alive at once in one forward pass of ``unet`` (of
    architecture ``model``, on the CPU in ``dtype``), per row; the weights not counted
    (they are loaded already). Measured once per architecture and dtype in a process."""
    # a config built in Python may hold lists: the cache needs it hashable
    key = (ModelConfig.from_dict(model.to_dict()), dtype)
    if key not in _ROW_PEAKS:
        from facediff.model import unet_inputs  # diffusers is heavy

        rows = 2  # the peak is linear in the rows: 2 of them halve any per-call constant
        sample, timestep, labels = unet_inputs(model, rows, dtype, device="cpu")
        tracker = _LivePeak()
        with torch.inference_mode(), tracker:
            unet(sample, timestep, class_labels=labels)
        _ROW_PEAKS[key] = -(-tracker.peak // rows)
    return _ROW_PEAKS[key]


_ROW_PEAKS: dict[tuple[ModelConfig, torch.dtype], int] = {}


def fitting_batch(
    unet: torch.nn.Module, model: ModelConfig, dtype: torch.dtype, rows: int, batch_size: int
) -> tuple[int, str | None]:
    """The images per batch to sample ``unet`` (see :func:`row_bytes`) on the CPU when each
    image runs ``rows`` UNet rows: ``batch_size`` where it fits (or where memory cannot be
    told), else the most that fit, with a warning saying so. Raises :class:`ConfigError`
    where not even one image fits."""
    available = available_bytes()
    if available is None:
        return batch_size, None
    if batch_size * rows * feature_bytes(model, dtype) * FEATURE_MULTIPLE * MARGIN <= available:
        return batch_size, None  # fits even at the upper bound: no need to measure
    per_image = int(rows * row_bytes(unet, model, dtype) * MARGIN)
    if batch_size * per_image <= available:
        return batch_size, None
    size = format_size
    needs = (
        f"{size(per_image)} an image at {model.sample_size} px, {rows} UNet rows each; "
        f"{size(available)} is available"
    )
    largest = available // per_image
    if largest < 1:
        raise ConfigError(
            f"sampling this model on the CPU needs about {needs}: free some memory, or "
            "sample on a GPU"
        )
    note = (
        f"warning: batches of {batch_size} images would need about "
        f"{size(batch_size * per_image)} of memory on the CPU ({needs}); sampling {largest} "
        "at a time instead (--batch-size sets only the speed: the images are the same)"
    )
    return int(largest), note
