"""Deep-feature caching for sampling (DeepCache: Ma, Fang & Wang 2024, arXiv:2312.00858).

Between adjacent sampling steps the UNet's deep features change little, while its
shallowest blocks, at full resolution, carry the detail. With ``deep_cache=N`` every N-th
step (and the first) runs the whole UNet and keeps the input of its last up block; the
steps between run only the shallow branch — ``conv_in``, the first down block (for its
skip connections), the last up block on the kept features, and the output head. On the
``base`` preset at 64 px that branch costs 35% of a full evaluation (18.2 of 52.1 GFLOP;
a compiled model also drops the first down block's unused downsampler).

The images differ from the full network's (it is an approximation): ``deep_cache=1``, the
default, is the exact model. Guided conditions stay batched as they are: each cached row
is reused by the same condition of the same image.

This module imports only torch: ``facediff export`` copies it next to ``pipeline.py``.
"""

from __future__ import annotations

import torch


class DeepCacheUNet(torch.nn.Module):
    """A ``diffusers.UNet2DModel``'s forward split for deep-feature caching.

    ``forward(sample, timestep, class_labels, cached=None)`` returns ``(output,
    features)``: with ``cached=None`` the whole UNet (``output`` equals the UNet's own
    forward exactly) and the features entering its last up block; with ``cached`` those
    features from an earlier step, only the shallow branch on them (``features`` is
    ``cached``). Built for the UNet2DModel blocks facediff uses (no skip-sample blocks,
    no Fourier time embedding)."""

    def __init__(self, unet: torch.nn.Module) -> None:
        super().__init__()
        self.unet = unet
        blocks = ("conv_in", "time_proj", "down_blocks", "mid_block", "up_blocks", "conv_out")
        missing = [name for name in blocks if not hasattr(unet, name)]
        if missing:
            raise ValueError(
                f"deep cache: {type(unet).__name__} is not a UNet2DModel (no "
                f"{', '.join(missing)}); sample it with deep_cache=1"
            )
        config = getattr(unet, "config", None)
        setting = lambda name, default=None: getattr(config, name, default)  # noqa: E731
        unsupported = [
            name
            for name, value in (
                ("center_input_sample", setting("center_input_sample", False)),
                ("Fourier time embedding", setting("time_embedding_type") == "fourier"),
                ("skip blocks", any(hasattr(b, "skip_conv") for b in unet.down_blocks)),
                ("timestep class embedding", setting("class_embed_type") == "timestep"),
            )
            if value
        ]
        if unsupported:
            raise ValueError(f"deep cache: this UNet's {', '.join(unsupported)} is not supported")
        # The skip connections the last up block takes: the first ones the down path makes.
        self.shallow_skips = len(unet.up_blocks[-1].resnets)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        class_labels: torch.Tensor | None = None,
        cached: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        unet = self.unet
        emb = self._embedding(sample, timestep, class_labels)
        h = unet.conv_in(sample)
        skips: tuple[torch.Tensor, ...] = (h,)
        for block in unet.down_blocks if cached is None else unet.down_blocks[:1]:
            h, res = block(hidden_states=h, temb=emb)
            skips += res
        if cached is None:
            if unet.mid_block is not None:
                h = unet.mid_block(h, emb)
            for block in unet.up_blocks[:-1]:
                n = len(block.resnets)
                h = block(h, skips[-n:], emb)
                skips = skips[:-n]
            features = h
        else:
            features = h = cached
            skips = skips[: self.shallow_skips]
        h = unet.up_blocks[-1](h, skips, emb)
        h = unet.conv_out(unet.conv_act(unet.conv_norm_out(h)))
        return h, features

    def _embedding(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        labels: torch.Tensor | None,
    ) -> torch.Tensor:
        """The time (+ class) embedding, as ``UNet2DModel.forward`` computes it."""
        unet = self.unet
        t = timestep
        if not torch.is_tensor(t):
            t = torch.tensor([t], dtype=torch.long, device=sample.device)
        elif t.ndim == 0:
            t = t[None].to(sample.device)
        t = t * torch.ones(sample.shape[0], dtype=t.dtype, device=t.device)
        emb = unet.time_embedding(unet.time_proj(t).to(dtype=unet.dtype))
        if unet.class_embedding is not None:
            if labels is None:
                raise ValueError("class_labels should be provided when doing class conditioning")
            emb = emb + unet.class_embedding(labels).to(dtype=unet.dtype)
        return emb
