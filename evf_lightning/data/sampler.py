"""A seeded, rank-aware sampler whose draws carry their epoch, so per-sample randomness is reproducible."""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import NamedTuple

import torch.distributed as dist
from torch.utils.data import DistributedSampler


class Draw(NamedTuple):
    """Which item to read, and the epoch it is read in (seeds that item's random choices).

    A mixture may draw one item twice in an epoch; its `draw` number then seeds the choices too, so each
    draw gets its own prompts.
    """

    index: int
    epoch: int
    draw: int | None = None


class EpochDrawSampler(DistributedSampler):
    """DistributedSampler that yields `Draw(index, epoch)` instead of bare indices.

    The dataset seeds its choice of expressions from (seed, epoch, index), never from global random
    state, so a run is the same for a given seed whatever the worker count, and each rank reads a
    disjoint shard. Being a DistributedSampler, Lightning keeps it and calls `set_epoch` each epoch.
    """

    def __init__(self, dataset: Sized, shuffle: bool = True, seed: int = 0, drop_last: bool = False) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        super().__init__(
            dataset,
            num_replicas=dist.get_world_size() if distributed else 1,
            rank=dist.get_rank() if distributed else 0,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
        )

    def __iter__(self) -> Iterator[Draw]:  # type: ignore[override]
        for index in super().__iter__():
            yield Draw(index, self.epoch)
