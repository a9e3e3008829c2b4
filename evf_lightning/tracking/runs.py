"""Reading runs back from MLflow."""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode
from mlflow.tracking import MlflowClient

from evf_lightning.tracking.run_record import BEST_CHECKPOINT_TAG


def latest_best_checkpoint(tracking_uri: str, experiment_name: str) -> str:
    """Best checkpoint of the newest finished run of an experiment that recorded one."""
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        raise LookupError(f"MLflow at {tracking_uri} has no experiment {experiment_name!r}; train one first")
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{BEST_CHECKPOINT_TAG}` != '' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        raise LookupError(f"no finished run of {experiment_name!r} in {tracking_uri} recorded a best checkpoint")
    return runs[0].data.tags[BEST_CHECKPOINT_TAG]


class RunLookupError(LookupError):
    """A run that the tracking store does not hold, or a store that does not exist."""


# A look-up that can do without its answer (a model card's metrics) tries once, briefly, instead of MLflow's
# default of 7 retries with backoff, which keeps a command waiting for minutes on a server that is down.
IMPATIENT_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def read_run(tracking_uri: str, run_id: str, patient: bool = True) -> Run:
    """The run `run_id` of the store at `tracking_uri`; a SQLite store that does not exist is refused, not created.

    Not `patient`: one short try against a tracking server (IMPATIENT_HTTP).
    """
    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri.removeprefix("sqlite:///")).is_file():
        raise RunLookupError(f"no MLflow store at {tracking_uri} (the file does not exist)")
    try:
        # MLflow reads these at each request; patch.dict puts the environment back as it was afterwards.
        with mock.patch.dict(os.environ, {} if patient else IMPATIENT_HTTP):
            return MlflowClient(tracking_uri).get_run(run_id)
    except MlflowException as error:
        if error.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            raise RunLookupError(f"MLflow at {tracking_uri} has no run {run_id!r}") from error
        raise
