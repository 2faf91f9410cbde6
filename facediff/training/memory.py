"""Whether a CPU training run can fit in memory, checked before its first step.

On the CPU a batch too large for the machine is not an error torch can raise: each
allocation succeeds until memory is full, and then the kernel kills the process
(exit 137, no message, minutes in). :func:`check_fits` refuses such a batch at once,
naming ``--batch-size`` and one that fits.

What a step needs is bounded from below, so a batch that fits is never refused. From
the second step on, the forward pass holds the weights, the EMA copy and AdamW's two
moments (16 bytes a parameter in fp32) and, per image, the output of every convolution,
group norm and SiLU, each of which the backward pass needs (the next layer keeps it).
torch's ``MemTracker`` measured 31 MiB an image for ``tiny`` at 64 px and 192 for ``base``
against this bound's 24 and 151; the peak resident memory of real CPU runs at 32 px grew
by 8.6 MiB an image for ``tiny`` (batch 8 against 264) and 54.7 for ``base`` (4 against
36) against the bound's 6.0 and 37.7. The outputs are counted by running the model once on
the meta device (no memory, no arithmetic; 0.2–0.5 s, once per model in a process). What
the machine has is ``MemAvailable`` plus free swap (``/proc/meminfo``), less where a
cgroup limits the process, shared among the processes a ``torchrun`` job runs on the
machine; where that cannot be told, nothing is checked.
"""

from __future__ import annotations

import functools

import torch

from facediff.config import ModelConfig
from facediff.errors import ConfigError
from facediff.host_memory import available_bytes, format_size

#: Bytes a parameter takes during a forward pass in fp32: weights, EMA weights and
#: AdamW's two moments (the gradients were released after the previous step).
PARAMETER_BYTES = 16
#: The step keeps more than the bound counts (1.27 to 1.45 times, measured): the batch
#: suggested is the bound's largest times this.
SUGGESTED_SHARE = 0.6
#: The layers whose outputs the bound counts.
_KEPT = (torch.nn.Conv2d, torch.nn.GroupNorm, torch.nn.SiLU)


def activation_bytes(model: ModelConfig, dtype: torch.dtype) -> tuple[int, int]:
    """Per image, the bytes in ``dtype`` of the layer outputs a training step keeps for
    backward (a lower bound, see the module docstring), and the parameter count."""
    # a config built in Python may hold lists: the cache needs it hashable
    numel, parameters = _counted(ModelConfig.from_dict(model.to_dict()))
    return numel * dtype.itemsize, parameters


@functools.lru_cache(maxsize=8)
def _counted(model: ModelConfig) -> tuple[int, int]:
    from facediff.model import meta_unet, unet_inputs  # diffusers is heavy

    unet = meta_unet(model)
    numel = 0

    def count(module: torch.nn.Module, args: object, output: object) -> None:
        nonlocal numel
        if isinstance(output, torch.Tensor):
            numel += output.numel()

    hooks = [m.register_forward_hook(count) for m in unet.modules() if isinstance(m, _KEPT)]
    sample, timestep, labels = unet_inputs(model, 1)
    with torch.no_grad():
        unet(sample, timestep, class_labels=labels)
    for h in hooks:
        h.remove()
    return numel, sum(p.numel() for p in unet.parameters())


def check_fits(
    model: ModelConfig, batch_size: int, dtype: torch.dtype, *, processes: int = 1
) -> None:
    """Refuse a CPU training batch that cannot fit in the memory available (see the module
    docstring); do nothing where the memory cannot be told. Under ``torchrun`` the
    ``processes`` of the run on this machine (``LOCAL_WORLD_SIZE``) each hold a model and
    a batch of ``batch_size``: each gets its share of the memory."""
    available = available_bytes()
    if available is None:
        return
    available //= max(1, processes)
    per_image, parameters = activation_bytes(model, dtype)
    fixed = parameters * PARAMETER_BYTES
    needed = fixed + batch_size * per_image
    if needed <= available:
        return
    size = format_size
    what = (
        f"{{}} {batch_size} needs at least {size(needed)} of memory to train on the CPU "
        f"({size(per_image)} an image at {model.sample_size} px, {size(fixed)} for the model "
        f"and optimizer); {size(available)} is available"
        + (f" to each of the {processes} processes on this machine" if processes > 1 else "")
    )
    largest = int((available - fixed) // per_image * SUGGESTED_SHARE) if per_image else 0
    hint = f": try {{}} {largest}" if largest >= 1 else ": use a smaller model (--preset)"
    raise ConfigError(what + hint, "batch_size", *(["batch_size"] if largest >= 1 else []))
