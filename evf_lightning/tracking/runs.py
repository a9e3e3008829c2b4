"""Reading runs back from MLflow."""

from __future__ import annotations

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
