"""MLflow logger with a real default store and a training loop that survives tracking outages."""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from mlflow.exceptions import MlflowException

from evf_lightning.tracking.sweep_runs import spell

log = logging.getLogger(__name__)

# Failures of a tracking backend that must not end a training run: network and server errors.
TRACKING_OUTAGES = (MlflowException, OSError)


def default_tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI` when set, else a SQLite store `mlflow.db` in the working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


@contextmanager
def sqlite_store_creation_lock(tracking_uri: str) -> Iterator[None]:
    """Let the processes of one job (torchrun, DDP) open a SQLite store one at a time.

    Each process builds its own MLflow client, and the first one to open a new store migrates its schema;
    mlflow's migration is not safe against a second process doing the same at once (it fails with
    "Online migration expected to match one row"). Other stores need no lock.
    """
    if not tracking_uri.startswith("sqlite:///"):
        yield
        return
    lock = Path(tracking_uri.removeprefix("sqlite:///") + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


class EvfMLFlowLogger(MLFlowLogger):
    """Lightning's MLFlowLogger, pointed at SQLite by default (never the deprecated file store).

    Metrics that cannot be sent (server down, network gone) are kept and sent with the next call that
    succeeds, with one warning per outage, so an outage costs no training and loses no metric.
    """

    def __init__(
        self,
        experiment_name: str = "evf-lightning",
        run_name: str | None = None,
        tracking_uri: str | None = None,
        tags: dict[str, Any] | None = None,
        log_model: Literal[True, False, "all"] = False,
        artifact_location: str | None = None,
        run_id: str | None = None,
    ) -> None:
        tracking_uri = tracking_uri or default_tracking_uri()
        with sqlite_store_creation_lock(tracking_uri):
            super().__init__(
                experiment_name=experiment_name,
                run_name=run_name,
                tracking_uri=tracking_uri,
                # MLflow tags are strings; from a YAML or JSON command line "0" or "[1,2]" arrive parsed.
                tags={key: spell(value) for key, value in (tags or {}).items()},
                save_dir=None,
                log_model=log_model,
                artifact_location=artifact_location,
                run_id=run_id,
            )
        self._pending: list[tuple[Mapping[str, float], int | None]] = []

    @property
    def tracking_uri(self) -> str:
        return self._tracking_uri

    def continue_run(self, run_id: str) -> None:
        """Log into the existing run `run_id` (a resumed fit) instead of starting a new one."""
        if self._initialized and self._run_id != run_id:
            raise RuntimeError(f"MLflow run {self._run_id} has started already; cannot continue run {run_id}")
        self._run_id = run_id

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self._pending.append((dict(metrics), step))
        try:
            while self._pending:
                super().log_metrics(*self._pending[0])
                self._pending.pop(0)
        except TRACKING_OUTAGES as error:
            if len(self._pending) == 1:
                log.warning("MLflow unreachable (%s); keeping metrics until it answers again", error)
