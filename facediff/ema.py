"""Exponential moving average of weights, kept in fp32.

Sampling from an EMA of the weights is standard for diffusion models (Ho et al. 2020,
arXiv:2006.11239; Song & Ermon 2020, arXiv:2006.09011). The decay warms up as
``min(decay, (1 + t) / (10 + t))`` (the TensorFlow ``ExponentialMovingAverage``
``num_updates`` rule) so early, rapidly changing weights are not averaged for long.
"""

from __future__ import annotations

import torch


def ema_decay_at(step: int, decay: float) -> float:
    """The decay used for the update after optimizer step ``step`` (0-based)."""
    return min(decay, (1.0 + step) / (10.0 + step))


class EMA:
    """An fp32 shadow of a module's floating-point parameters and buffers."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.shadow: dict[str, torch.Tensor] = {
            k: v.detach().float().clone() for k, v in model.state_dict().items()
        }
        params = dict(model.named_parameters())
        self._names = [k for k in self.shadow if k in params]
        self._params = [params[k] for k in self._names]
        self._shadow_params = [self.shadow[k] for k in self._names]

    @torch.no_grad()
    def update(self, step: int, decay: float) -> None:
        """Move the shadow towards the current parameters: ema += (1 - d) * (p - ema)."""
        weight = 1.0 - ema_decay_at(step, decay)
        current = [p.detach().float() for p in self._params]
        torch._foreach_lerp_(self._shadow_params, current, weight)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.shadow) ^ set(state)
        if missing:
            raise KeyError(f"EMA state does not match the model: {sorted(missing)[:3]}")
        for k, v in self.shadow.items():
            v.copy_(state[k])

    @torch.no_grad()
    def copy_to(self, model: torch.nn.Module) -> None:
        """Load the averaged weights into ``model`` (e.g. a separate copy for previews)."""
        model.load_state_dict(self.shadow)
