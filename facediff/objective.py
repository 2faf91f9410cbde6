"""The denoising objective: forward noising, targets and min-SNR-γ loss weights.

The noise schedule is diffusers' ``DDPMScheduler`` (Ho et al. 2020, arXiv:2006.11239);
its cumulative alphas are kept on the training device so a step needs no host copies.
Targets are ε or v = √ᾱ·ε − √(1−ᾱ)·x₀ (Salimans & Ho 2022, arXiv:2202.00512).
Min-SNR-γ weighting (Hang et al. 2023, arXiv:2303.09556) balances timesteps:
w = min(SNR, γ)/SNR for ε-prediction and min(SNR, γ)/(SNR + 1) for v-prediction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler


@dataclass(frozen=True)
class NoiseSchedule:
    sqrt_alpha_bar: torch.Tensor  # [T], float32, on the training device
    sqrt_one_minus_alpha_bar: torch.Tensor
    snr: torch.Tensor
    prediction_type: str

    @property
    def num_train_timesteps(self) -> int:
        return int(self.snr.shape[0])


def make_schedule(scheduler_config: dict[str, Any], device: torch.device) -> NoiseSchedule:
    sched = DDPMScheduler(**scheduler_config)
    alpha_bar = sched.alphas_cumprod.to(torch.float64)
    return NoiseSchedule(
        sqrt_alpha_bar=alpha_bar.sqrt().float().to(device),
        sqrt_one_minus_alpha_bar=(1 - alpha_bar).sqrt().float().to(device),
        snr=(alpha_bar / (1 - alpha_bar)).float().to(device),
        prediction_type=scheduler_config["prediction_type"],
    )


def _per_image(values: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return values[t].view(-1, 1, 1, 1)


def add_noise(s: NoiseSchedule, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor):
    """x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε."""
    return _per_image(s.sqrt_alpha_bar, t) * x0 + _per_image(s.sqrt_one_minus_alpha_bar, t) * noise


def target(s: NoiseSchedule, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor):
    if s.prediction_type == "epsilon":
        return noise
    return _per_image(s.sqrt_alpha_bar, t) * noise - _per_image(s.sqrt_one_minus_alpha_bar, t) * x0


def loss_weights(s: NoiseSchedule, t: torch.Tensor, gamma: float | None) -> torch.Tensor | None:
    """Min-SNR-γ weights per image (None = uniform)."""
    if gamma is None:
        return None
    snr = s.snr[t]
    clipped = torch.clamp(snr, max=gamma)
    return clipped / snr if s.prediction_type == "epsilon" else clipped / (snr + 1)


def diffusion_loss(
    prediction: torch.Tensor, goal: torch.Tensor, weights: torch.Tensor | None
) -> torch.Tensor:
    """Mean squared error per image, weighted, averaged over the batch (in fp32)."""
    per_image = F.mse_loss(prediction.float(), goal.float(), reduction="none").mean(dim=(1, 2, 3))
    if weights is not None:
        per_image = per_image * weights
    return per_image.mean()
