"""The training update replayed as one CUDA graph (``train --cuda-graphs``).

At the default batch of 32 the `base` step on an H200 is bound by per-step overhead, not
by arithmetic: eager, a step took 94 ms at batch 32 and 192 ms at batch 128, so about
60 ms of each step is the host launching ~thousands of small kernels. A CUDA graph
records those launches once and replays them with one call (PyTorch's "whole network
capture", https://pytorch.org/docs/stable/notes/cuda.html#whole-network-capture).

What is captured is :func:`facediff.training.step.update`: forward, loss, backward,
gradient clipping and the fused AdamW step. The step's random draws (timesteps, noise,
flips, label dropout) stay outside, on the seeded generator, and are copied into the
graph's static inputs each step, so a graphed run draws exactly what an eager run draws.
The learning rate is a device tensor that each step fills (a float would be frozen into
the graph at capture). The first :data:`WARMUP_STEPS` steps run eagerly on a side
stream (cuDNN autotuning, the optimizer's state and other lazy allocations happen
there); the next step is captured and replayed, and every later step is one replay.

Not with fp16 (the grad scaler checks for infs on the host), data-parallel runs or the
CPU: :func:`unsupported` says why and the run trains eagerly. A capture that fails warns
and the run goes on eagerly: the results do not depend on it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

#: Eager steps before the capture (PyTorch's recipe warms up on a side stream).
WARMUP_STEPS = 3


def unsupported(device: torch.device, dtype: torch.dtype, data_parallel: bool) -> str | None:
    """Why ``--cuda-graphs`` cannot apply to this run, or None when it can."""
    if device.type != "cuda":
        return "CUDA graphs need a GPU"
    if dtype == torch.float16:
        return "CUDA graphs do not support fp16 training (its loss scaling syncs with the host)"
    if data_parallel:
        return "CUDA graphs are single-GPU only"
    return None


class CudaGraph:
    """A :class:`torch.cuda.CUDAGraph` behind the two calls :class:`GraphedUpdate` makes."""

    def __init__(self) -> None:
        self.graph = torch.cuda.CUDAGraph()

    def capture(self, fn: Callable[[], Any]) -> Any:
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            return fn()

    def replay(self) -> None:
        self.graph.replay()


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
        self._side: torch.cuda.Stream | None = None

    def __call__(self, inputs, lr: float) -> torch.Tensor:
        for value in self._lr_tensors():
            value.fill_(lr)
        if self.graph is None and (self.failed or self.eager_steps < self.warmup_steps):
            return self._eager(inputs)
        if self.graph is None and not self._capture(inputs):
            return self._eager(inputs)
        if not self._fits(inputs):
            return self._eager(inputs)
        for static, value in zip(self.static, inputs, strict=True):
            if static is not None:
                static.copy_(value)
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

    def _fits(self, inputs) -> bool:
        """Whether ``inputs`` have the captured shapes (a batch of another size runs eagerly)."""
        return all(
            (s is None) == (x is None) and (s is None or s.shape == x.shape)
            for s, x in zip(self.static, inputs, strict=True)
        )

    def _eager(self, inputs) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        if self.device.type != "cuda":
            loss = self.update(inputs, cache_casts=False)
        else:
            self._side = self._side or torch.cuda.Stream(self.device)
            current = torch.cuda.current_stream(self.device)
            self._side.wait_stream(current)
            with torch.cuda.stream(self._side):
                loss = self.update(inputs, cache_casts=False)
            current.wait_stream(self._side)
        self.eager_steps += 1
        return loss

    def _capture(self, inputs) -> bool:
        """Record the update on static copies of ``inputs``; False (with a warning) if the
        capture fails, after which the run stays eager."""
        self.static = [None if x is None else x.clone() for x in inputs]
        self.optimizer.zero_grad(set_to_none=True)  # the capture allocates the gradients
        graph = self.new_graph()
        self._capturable(True)  # AdamW refuses a capture otherwise (and warns when eager)
        try:
            self.loss = graph.capture(lambda: self.update(self.static, cache_casts=False))
        except Exception as e:  # any capture failure leaves training eager
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            self.failed, self.static, self.loss = first, [], None
            self._capturable(False)
            self.optimizer.zero_grad(set_to_none=True)
            warnings.warn(
                f"--cuda-graphs: capturing the training step failed ({first}); "
                "training on without CUDA graphs",
                RuntimeWarning,
                stacklevel=2,
            )
            return False
        self.graph = graph
        return True

    def _capturable(self, on: bool) -> None:
        if self.device.type == "cuda":
            for group in self.optimizer.param_groups:
                group["capturable"] = on
