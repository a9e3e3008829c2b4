"""A seeded, rank-aware sampler whose draws carry their epoch, so per-sample randomness is reproducible."""

from __future__ import annotations

import itertools
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


class ResumablePosition:
    """A sampler's position within its epoch, for resuming mid-epoch without losing or repeating a draw.

    `resume_at(epoch, draws)` makes the next iteration be epoch `epoch` from this rank's draw `draws` on; later
    iterations start at the beginning again. The length stays a whole epoch's: Lightning counts the batches
    already done in the epoch itself and expects the loader to yield only the rest.
    """

    epoch: int
    _skip = 0

    def resume_at(self, epoch: int, draws: int) -> None:
        self.epoch = epoch
        self._skip = draws

    def _take_skip(self) -> int:
        skip, self._skip = self._skip, 0
        return skip


class EpochDrawSampler(ResumablePosition, DistributedSampler):
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
        for index in itertools.islice(super().__iter__(), self._take_skip(), None):
            yield Draw(index, self.epoch)
