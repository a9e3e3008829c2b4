"""What a checkpoint must carry beyond Lightning's own state for a resumed run to be the same run.

Lightning saves weights, optimizer, LR schedule, loop progress and (through `ResumableLoader`) the data
position. It does not save the global random state, and the MLflow logger starts a new run on resume. The
`ResumeState` callback adds both, so a killed run continues bit for bit and in the same MLflow run.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning import Callback, LightningModule, Trainer

from evf_lightning.tracking.logger import EvfMLFlowLogger

SHARDED_META = "meta.pt"  # the non-tensor part of a sharded (FSDP) checkpoint folder


def rng_state() -> dict[str, Any]:
    """Global random state of torch (CPU and CUDA), numpy and Python, as tensors and plain data only, so the
    checkpoint still loads with `torch.load(weights_only=True)`."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss],
        "python": list(random.getstate()),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


class ResumeState(Callback):
    """Saves the random state and the MLflow run id with every checkpoint and restores them on resume.

    The random state is put back right before the first training batch after resuming, not at load: between
    the two, Lightning's sanity check and the creation of loader iterators draw from the global generator,
    which the uninterrupted run did not do at that point.
    """

    def __init__(self) -> None:
        self._pending_rng: dict[str, Any] | None = None
        self._trainer: Trainer | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"rng": rng_state(), "mlflow_run_id": mlflow_run_id_of(self._trainer)}

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._trainer = trainer

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._pending_rng = state["rng"]

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if self._pending_rng is not None:
            set_rng_state(self._pending_rng)
            self._pending_rng = None


def mlflow_run_id_of(trainer: Trainer | None) -> str | None:
    loggers = [] if trainer is None else [lg for lg in trainer.loggers if isinstance(lg, EvfMLFlowLogger)]
    return loggers[0].run_id if loggers else None


def checkpoint_mlflow_run_id(ckpt_path: str | Path) -> str | None:
    """The MLflow run a checkpoint belongs to, read without loading its tensors into memory.

    `ckpt_path` is a checkpoint file or a sharded checkpoint folder; None for a checkpoint written before
    runs were recorded in it.
    """
    path = Path(ckpt_path)
    if path.is_dir():
        path = path / SHARDED_META
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {ckpt_path} does not exist (nor a sharded folder with {SHARDED_META})")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return recorded_mlflow_run_id(checkpoint.get("callbacks", {}))


def recorded_mlflow_run_id(callbacks: Mapping[str, Any]) -> str | None:
    """The MLflow run id that `ResumeState` recorded among a loaded checkpoint's callback states, if any."""
    return callbacks.get(ResumeState.__qualname__, {}).get("mlflow_run_id")
