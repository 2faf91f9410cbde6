"""Which images go into each batch: a reproducible, resumable index stream.

The stream is the concatenation of one ordering per epoch; epoch ``e``'s ordering is
drawn from a ``torch.Generator`` seeded with ``(seed, e)``. A batch is the slice of the
stream at ``[images_seen, images_seen + global_batch)``, and rank ``r`` of a
distributed run takes its own contiguous shard of that slice. So the batch of any step
follows from ``images_seen`` alone, and a resumed run sees exactly the batches the
uninterrupted run would have seen (also after a change of batch size).

With ``balance`` an epoch is ``N`` draws with replacement, weights ∝ 1/class count, so
every category is seen equally often on average.
"""

from __future__ import annotations

import torch

_EPOCH_SEED_STRIDE = 1_000_003


class IndexStream:
    def __init__(self, labels: torch.Tensor, *, seed: int, balance: bool, device: torch.device):
        self.n = int(labels.shape[0])
        self.seed = seed
        self.device = device
        self.weights = None
        if balance:
            counts = torch.bincount(labels.cpu()).double()
            self.weights = (1.0 / counts)[labels.cpu()]
        self._cached: tuple[int, torch.Tensor] | None = None

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The image indices of ``epoch``, on the training device (cached for one epoch)."""
        if self._cached is not None and self._cached[0] == epoch:
            return self._cached[1]
        g = torch.Generator().manual_seed(self.seed * _EPOCH_SEED_STRIDE + epoch)
        if self.weights is None:
            order = torch.randperm(self.n, generator=g)
        else:
            order = torch.multinomial(self.weights, self.n, replacement=True, generator=g)
        order = order.to(self.device)
        self._cached = (epoch, order)
        return order

    def take(self, start: int, count: int) -> torch.Tensor:
        """``count`` indices starting at stream position ``start`` (may span epochs)."""
        parts = []
        while count > 0:
            epoch, offset = divmod(start, self.n)
            chunk = self.epoch_order(epoch)[offset : offset + count]
            parts.append(chunk)
            start += chunk.shape[0]
            count -= chunk.shape[0]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def batch(self, images_seen: int, batch_size: int, rank: int):
        """This rank's indices of the global batch that starts at ``images_seen``."""
        return self.take(images_seen + rank * batch_size, batch_size)
