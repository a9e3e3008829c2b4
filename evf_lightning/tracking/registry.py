"""The MLflow Model Registry side of publishing: a run's checkpoint found, a pyfunc model version registered.

A version is linked to its run (run_id, and a source under the run's artifacts) and carries the run's metrics
(`metric.<name>`) and tags as its own tags, so the registry alone says where a model came from and how good it is.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import mlflow.pyfunc
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode
from mlflow.tracking import MlflowClient

from evf_lightning.hub.run_checkpoint import RUN_CONFIG
from evf_lightning.tracking.run_record import BEST_CHECKPOINT_TAG
from evf_lightning.tracking.runs import RunLookupError

CHECKPOINTS_ARTIFACT = "checkpoints"
PYFUNC_ARTIFACTS = "registered_models"
METRIC_TAG_PREFIX = "metric."
RUN_ID_TAG = "evf.run_id"


def experiment_name(tracking_uri: str, run: Run) -> str:
    return MlflowClient(tracking_uri).get_experiment(run.info.experiment_id).name


def run_checkpoint(tracking_uri: str, run: Run, workdir: Path) -> Path:
    """The run's best checkpoint: the file its tag names when it is here, else its logged checkpoint artifact
    (downloaded into `workdir` with the run's config.yaml beside it, as in a run folder)."""
    tagged = run.data.tags.get(BEST_CHECKPOINT_TAG)
    if tagged and Path(tagged).exists():
        return Path(tagged)
    client = MlflowClient(tracking_uri)
    run_id = run.info.run_id
    logged = [a.path for a in client.list_artifacts(run_id, CHECKPOINTS_ARTIFACT) if a.path.endswith(".ckpt")]
    if not logged:
        raise RunLookupError(
            f"run {run_id} has no checkpoint: its tag {BEST_CHECKPOINT_TAG} is {tagged!r} (no such file here) and "
            f"it logged no {CHECKPOINTS_ARTIFACT}/*.ckpt artifact"
        )
    ckpt = Path(client.download_artifacts(run_id, logged[-1], str(workdir)))
    if RUN_CONFIG in {a.path for a in client.list_artifacts(run_id)}:
        client.download_artifacts(run_id, RUN_CONFIG, str(workdir))
    return ckpt


def version_tags(run: Run) -> dict[str, str]:
    """The run's metrics (as `metric.<name>`, exact repr) and its own tags (not MLflow's), plus its id."""
    tags = {key: value for key, value in run.data.tags.items() if not key.startswith("mlflow.")}
    tags.update({f"{METRIC_TAG_PREFIX}{name}": repr(value) for name, value in run.data.metrics.items()})
    tags[RUN_ID_TAG] = run.info.run_id
    return tags


def register_pyfunc_version(
    tracking_uri: str,
    run: Run,
    name: str,
    model_code: Path,
    artifacts: Mapping[str, str],
    pip_requirements: Sequence[str],
) -> ModelVersion:
    """Save the pyfunc model that `model_code` builds (MLflow's models-from-code) with `artifacts` under the run's
    artifacts and register it as a new version of `name` (created if new), linked to the run and tagged with its
    metrics and tags.

    `pip_requirements` is given explicitly: MLflow then neither infers them (which imports and times the model)
    nor captures a conda or virtualenv environment.
    """
    client = MlflowClient(tracking_uri)
    run_id = run.info.run_id
    path = f"{PYFUNC_ARTIFACTS}/{name}-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as staging:
        model_dir = Path(staging) / "model"
        mlflow.pyfunc.save_model(
            model_dir, python_model=str(model_code), artifacts=dict(artifacts), pip_requirements=list(pip_requirements)
        )
        client.log_artifacts(run_id, str(model_dir), path)
    try:
        client.create_registered_model(name, description="EVF-SAM models trained with evf-lightning")
    except MlflowException as error:
        if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
    return client.create_model_version(
        name,
        source=f"{run.info.artifact_uri}/{path}",
        run_id=run_id,
        tags=version_tags(run),
        description=f"from MLflow run {run_id}",
    )
