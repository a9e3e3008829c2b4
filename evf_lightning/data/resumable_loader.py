"""A training DataLoader whose place in the epoch goes into the checkpoint, so a resumed run neither loses nor
repeats a sample."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import torch.distributed as dist
from torch.utils.data import DataLoader

from evf_lightning.data.sampler import ResumablePosition

log = logging.getLogger(__name__)


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class ResumableLoader(DataLoader):
    """DataLoader with Lightning's stateful-loader interface (`state_dict` / `load_state_dict`).

    It counts the batches it has handed out this epoch. Lightning does not prefetch from a loader with a
    length, so at a checkpoint that count is exactly the batches trained on. On load, the sampler resumes at
    the next draw of the same epoch. Each rank's position is its own shard's; a checkpoint of another world
    size therefore cannot say where this rank stands, and the epoch restarts (with a warning).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.sampler, ResumablePosition):
            raise TypeError(f"ResumableLoader needs a sampler with a resumable position, got {type(self.sampler)}")
        self._batches = 0
        self._start = 0

    def __iter__(self) -> Iterator[Any]:
        # A generator: the sampler is read at the first batch, after Lightning's `set_epoch`.
        self._batches, self._start = self._start, 0
        self.sampler.resume_at(self.sampler.epoch, self._batches * self.batch_size)
        for batch in super().__iter__():
            self._batches += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.sampler.epoch, "batches": self._batches, "world_size": world_size()}

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, batches = state["epoch"], state["batches"]
        if state["world_size"] != world_size():
            log.warning(
                "checkpoint was written by %d processes, this run has %d: epoch %d restarts from its beginning",
                state["world_size"],
                world_size(),
                epoch,
            )
            batches = 0
        if batches >= len(self):  # saved at the epoch's very end: the next epoch starts fresh
            epoch, batches = epoch + 1, 0
        self.sampler.set_epoch(epoch)
        self._start = batches
