"""Mixing training sources by ratio with a seeded, rank-aware sampler (design.md, "Mixing by ratio").

An epoch is `samples_per_epoch` draws. Draw i of epoch e picks its source with the normalised ratios, then
an image of that source uniformly, both from a generator seeded by (seed, e, i) and nothing else: a draw is
the same whatever the world size, rank, worker count or what was read before, so any draw can be recomputed
on its own (resume, inspection). Rank r of a world of w processes takes draws r, r + w, r + 2w, ...
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import DistributedSampler

from evf_lightning.data.sampler import Draw, ResumablePosition


def normalised_ratios(ratios: Sequence[float]) -> np.ndarray:
    """Weights as probabilities; each must be positive (a source nobody draws should not be configured)."""
    weights = np.asarray(ratios, dtype=np.float64)
    if weights.ndim != 1 or len(weights) == 0:
        raise ValueError("a mixture needs at least one source ratio")
    if not np.all(np.isfinite(weights) & (weights > 0)):
        raise ValueError(f"mixture ratios must be positive numbers, got {list(ratios)}")
    return weights / weights.sum()


class MixtureSampler(ResumablePosition, DistributedSampler):
    """Yields `Draw(index, epoch, draw)` over the concatenation of sources of `sizes` images.

    `index` is global (source offset + image); `draw` is the draw's number in its epoch, which also seeds
    the dataset's choice of prompts. Every rank yields ceil(samples_per_epoch / w) draws, the last few
    running past `samples_per_epoch` where w does not divide it, so all ranks take the same number of steps.
    Being a DistributedSampler, Lightning keeps it under DDP and calls `set_epoch` every epoch.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        ratios: Sequence[float],
        samples_per_epoch: int,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if len(sizes) != len(ratios):
            raise ValueError(f"{len(sizes)} sources but {len(ratios)} ratios")
        empty = [i for i, size in enumerate(sizes) if size <= 0]
        if empty:
            raise ValueError(f"mixture sources {empty} have no images to draw")
        if samples_per_epoch <= 0:
            raise ValueError(f"samples_per_epoch must be positive, got {samples_per_epoch}")
        super().__init__(
            range(samples_per_epoch), num_replicas=num_replicas, rank=rank, shuffle=False, seed=seed, drop_last=False
        )
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])
        self.probabilities = normalised_ratios(ratios)
        self.samples_per_epoch = samples_per_epoch
        self.num_samples = math.ceil(samples_per_epoch / num_replicas)

    def __len__(self) -> int:
        return self.num_samples

    def source_of(self, draw: int, epoch: int | None = None) -> tuple[int, int]:
        """(source, image within that source) of draw number `draw` of `epoch` (default: the current one)."""
        rng = np.random.default_rng([self.seed, self.epoch if epoch is None else epoch, draw])
        source = int(rng.choice(len(self.probabilities), p=self.probabilities))
        return source, int(rng.integers(self.sizes[source]))

    def draw(self, draw: int, epoch: int | None = None) -> Draw:
        epoch = self.epoch if epoch is None else epoch
        source, image = self.source_of(draw, epoch)
        return Draw(int(self.offsets[source]) + image, epoch, draw)

    def __iter__(self) -> Iterator[Draw]:  # type: ignore[override]
        for k in range(self._take_skip(), self.num_samples):
            yield self.draw(self.rank + k * self.num_replicas)
