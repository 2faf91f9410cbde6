"""CUDA graphs without compiling: launch a whole step's kernels with one call.

An eager step of a small batch is bound by the host, not the GPU: the `base` training step
on an H200 took 94 ms at batch 32 and 192 ms at batch 128, so about 60 ms of each step is
Python and kernel launches, and sampling 8 images took 1.2 s for 25 steps. A CUDA graph
records a step's launches once and replays them with one call (PyTorch's "whole network
capture", https://pytorch.org/docs/stable/notes/cuda.html#cuda-graphs). Unlike
``torch.compile(mode="reduce-overhead")`` this costs no compilation, so the short jobs
that the auto ``--compile`` policy leaves eager get it too.

Two users, on by default on a GPU (``--cuda-graphs``/``--no-cuda-graphs`` force it), since
an H200 measured both (:func:`wanted`):

- :class:`GraphedUpdate` (``train``): the update — forward, loss, backward, gradient
  clipping and the fused AdamW step (:func:`facediff.training.step.update`). The step's
  random draws (timesteps, noise, flips, label dropout) stay outside, on the seeded
  generator, and are copied into the graph's static inputs, so a graphed run draws what an
  eager run draws. The learning rate is a device tensor filled each step (a float would be
  frozen into the graph). Not with fp16 (the grad scaler checks for infs on the host) nor
  data-parallel: :func:`unsupported` says why, and the run trains eagerly. ``base`` at
  batch 32 trained at 585 images/s graphed against 361 eager (the same losses), and at 1,271
  compiled and graphed.
- :class:`GraphedForward` (``sample``, ``grid``, ``evaluate``): the UNet's inference
  forward, one graph per input shape (a job has a few: conditions per image × batch).
  Eight images a batch sampled at 38.2 images/s against 17.8 eager, 64 at 48.6 against
  47.8, with the same images bit for bit. A compiled model is graphed only when asked
  (``mode="reduce-overhead"``, not measured): compiled jobs are large-batch ones.

Both warm up eagerly on a side stream before capturing (cuDNN autotuning, the optimizer's
state and other lazy allocations happen there), and a capture that fails warns and goes on
eagerly: results never depend on the graphs.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import Any

import torch

from facediff.errors import first_line

#: Eager training steps before the capture (PyTorch's recipe warms up on a side stream).
WARMUP_STEPS = 3
#: Eager forwards per input shape before that shape is captured.
WARMUP_CALLS = 2


def wanted(setting: bool | None, why_not: str | None, *, compiled: bool = False) -> bool:
    """Whether to replay as CUDA graphs: ``setting`` ``True``/``False``
    (``--cuda-graphs``/``--no-cuda-graphs``) is obeyed where they apply (``why_not`` is
    None, see :func:`unsupported`); ``None`` (auto, the default) turns them on wherever they
    apply, except for a ``compiled`` sampling model. On the CPU nothing changes."""
    if why_not is not None or setting is False:
        return False
    return bool(setting) or not compiled


def needs_gpu(device: torch.device) -> str | None:
    """Why CUDA graphs cannot apply on ``device`` (all sampling needs), or None."""
    return None if device.type == "cuda" else "CUDA graphs need a GPU"


def unsupported(
    device: torch.device, dtype: torch.dtype, data_parallel: bool = False
) -> str | None:
    """Why CUDA graphs cannot apply to a training run on ``device`` in ``dtype``, or None
    when they can (sampling needs only a GPU: :func:`needs_gpu`)."""
    if why := needs_gpu(device):
        return why
    if dtype == torch.float16:
        return "CUDA graphs do not support fp16 training (its loss scaling syncs with the host)"
    if data_parallel:
        return "CUDA graphs are single-GPU only"
    return None


class CudaGraph:
    """A :class:`torch.cuda.CUDAGraph` behind the two calls the graphed wrappers make."""

    def __init__(self, pool: Any = None) -> None:
        self.graph, self.pool = torch.cuda.CUDAGraph(), pool

    def capture(self, fn: Callable[[], Any]) -> Any:
        with torch.cuda.graph(self.graph, pool=self.pool, capture_error_mode="thread_local"):
            return fn()

    def replay(self) -> None:
        self.graph.replay()


class _SideStream:
    """Runs eager warm-up work on a side stream on a GPU (directly elsewhere)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.stream = device, None

    def run(self, fn: Callable[[], Any]) -> Any:
        if self.device.type != "cuda":
            return fn()
        self.stream = self.stream or torch.cuda.Stream(self.device)
        current = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(current)
        with torch.cuda.stream(self.stream):
            out = fn()
        current.wait_stream(self.stream)
        return out


class GraphedUpdate:
    """Runs ``update(inputs, cache_casts=False)`` (which returns the loss) as a replayed
    graph after :data:`WARMUP_STEPS` eager steps; see the module docstring.

    ``optimizer`` is the one ``update`` steps; ``new_graph`` makes the graph (default
    :class:`CudaGraph`; a stand-in in tests, where the side stream is used only on a GPU).
    """

    def __init__(
        self,
        update: Callable[..., torch.Tensor],
        optimizer: torch.optim.Optimizer,
        device: torch.device,
        *,
        new_graph: Callable[[], Any] | None = None,
        warmup_steps: int = WARMUP_STEPS,
    ) -> None:
        self.update, self.optimizer, self.device = update, optimizer, device
        self.new_graph, self.warmup_steps = new_graph or CudaGraph, warmup_steps
        self.graph: Any = None
        self.static: list[torch.Tensor | None] = []
        self.loss: torch.Tensor | None = None
        self.eager_steps = 0
        self.failed: str | None = None  # why the capture failed (the run then stays eager)
        self._lrs: list[torch.Tensor] = []
        self._side = _SideStream(device)

    def __call__(self, inputs, lr: float) -> torch.Tensor:
        for value in self._lr_tensors():
            value.fill_(lr)
        if self.graph is None and (self.failed or self.eager_steps < self.warmup_steps):
            return self._eager(inputs)
        if self.graph is None and not self._capture(inputs):
            return self._eager(inputs)
        if not _same_shapes(self.static, inputs):
            return self._eager(inputs)
        _copy_into(self.static, inputs)
        self.graph.replay()
        return self.loss.clone()

    def _lr_tensors(self) -> list[torch.Tensor]:
        """Each parameter group's learning rate as a device tensor (made once; read by
        the fused AdamW kernel at every step, so a replay sees each step's value)."""
        if not self._lrs:
            for group in self.optimizer.param_groups:
                group["lr"] = torch.tensor(float(group["lr"]), device=self.device)
                self._lrs.append(group["lr"])
        return self._lrs

    def _eager(self, inputs) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self._side.run(lambda: self.update(inputs, cache_casts=False))
        self.eager_steps += 1
        return loss

    def _capture(self, inputs) -> bool:
        """Record the update on static copies of ``inputs``; False (with a warning) if the
        capture fails, after which the run stays eager."""
        self.static = _static_copies(inputs)
        self.optimizer.zero_grad(set_to_none=True)  # the capture allocates the gradients
        graph = self.new_graph()
        self._capturable(True)  # AdamW refuses a capture otherwise (and warns when eager)
        try:
            self.loss = graph.capture(lambda: self.update(self.static, cache_casts=False))
        except Exception as e:  # any capture failure leaves training eager
            self.failed, self.static, self.loss = first_line(e), [], None
            self._capturable(False)
            self.optimizer.zero_grad(set_to_none=True)
            warnings.warn(
                f"--cuda-graphs: capturing the training step failed ({self.failed}); "
                "training on without CUDA graphs",
                RuntimeWarning,
                stacklevel=3,
            )
            return False
        self.graph = graph
        if self.device.type == "cuda":
            torch.cuda.empty_cache()  # the warm-up's side-stream blocks: no longer used
        return True

    def _capturable(self, on: bool) -> None:
        if self.device.type == "cuda":
            for group in self.optimizer.param_groups:
                group["capturable"] = on


class GraphedForward(torch.nn.Module):
    """An eager UNet's inference forward ``(sample, timestep, class_labels, *more)``
    replayed as a CUDA graph, one per input shape (an input given as None counts as a
    shape of its own), each captured after :data:`WARMUP_CALLS` eager calls. The graphs
    share one memory pool: each output is copied out as soon as its graph has run, so no
    graph's result is left where another graph works. Returns the module's output tuple
    (``return_dict=False``, as sampling calls it): ``(output,)`` for a UNet2DModel; a
    :class:`~facediff.deep_cache.DeepCacheUNet` takes ``cached`` as a fourth input."""

    def __init__(
        self,
        module: torch.nn.Module,
        device: torch.device,
        *,
        new_graph: Callable[[Any], Any] | None = None,
        warmup_calls: int = WARMUP_CALLS,
    ) -> None:
        super().__init__()
        self.module, self.device = module, device
        self.new_graph, self.warmup_calls = new_graph or CudaGraph, warmup_calls
        self.graphs: dict[tuple, tuple[Any, list[torch.Tensor], tuple[torch.Tensor, ...]]] = {}
        self.calls: dict[tuple, int] = {}
        self.failed: str | None = None
        self._side = _SideStream(device)
        self._pool: Any = None
        # UNet2DModel takes return_dict; DeepCacheUNet always returns a tuple
        self._call_kwargs = {"return_dict": False} if _takes_return_dict(module) else {}

    def forward(self, sample, timestep, class_labels=None, *more, return_dict: bool = False):
        if return_dict:
            raise TypeError("GraphedForward returns a tuple: call it with return_dict=False")
        inputs = [sample, torch.as_tensor(timestep, device=sample.device), class_labels, *more]
        if self.failed:
            return self._call(inputs)
        key = tuple(None if x is None else (tuple(x.shape), x.dtype) for x in inputs)
        entry = self.graphs.get(key)
        if entry is None:
            self.calls[key] = self.calls.get(key, 0) + 1
            if self.calls[key] <= self.warmup_calls:
                return self._side.run(lambda: self._call(inputs))
            entry = self._capture(key, inputs)
            if entry is None:
                return self._call(inputs)
        graph, static, outs = entry
        _copy_into(static, inputs)
        graph.replay()
        return tuple(out.clone() for out in outs)

    def _call(self, inputs: list) -> tuple:
        return tuple(self.module(*inputs, **self._call_kwargs))

    def _capture(self, key: tuple, inputs: list) -> tuple | None:
        static = _static_copies(inputs)
        if self._pool is None and self.device.type == "cuda":
            self._pool = torch.cuda.graph_pool_handle()
        graph = self.new_graph(self._pool)
        try:
            outs = graph.capture(lambda: self._call(static))
        except Exception as e:  # any capture failure leaves sampling eager
            self.failed = first_line(e)
            warnings.warn(
                f"--cuda-graphs: capturing the model failed ({self.failed}); "
                "sampling on without CUDA graphs",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
        self.graphs[key] = (graph, static, outs)
        return self.graphs[key]


def _takes_return_dict(module: torch.nn.Module) -> bool:
    return "return_dict" in inspect.signature(module.forward).parameters


def _static_copies(inputs) -> list:
    """The tensors a graph is captured on (None stays None): each replay refills them."""
    return [None if x is None else x.clone() for x in inputs]


def _same_shapes(static: list, inputs) -> bool:
    """Whether ``inputs`` have the captured shapes (another shape runs eagerly)."""
    return all(
        (s is None) == (x is None) and (s is None or s.shape == x.shape)
        for s, x in zip(static, inputs, strict=True)
    )


def _copy_into(static: list, inputs) -> None:
    for s, x in zip(static, inputs, strict=True):
        if s is not None:
            s.copy_(x)
