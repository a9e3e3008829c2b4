"""A sweep in MLflow: one parent run per grid, one child run per cell, found again by sweep name, cell key and
overrides."""

from __future__ import annotations

import json
from typing import Any, Literal

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

SWEEP_TAG = "evf.sweep"
ROLE_TAG = "evf.role"  # "parent" or "cell"
CELL_TAG = "evf.cell"
CELL_INDEX_TAG = "evf.cell_index"
CELL_LABEL_TAG = "evf.cell_label"
OVERRIDES_TAG = "evf.overrides"  # the sweep's --overrides, part of a cell's identity
PARENT_TAG = "mlflow.parentRunId"
AXIS_TAG_PREFIX = "axis."


def spell(value: Any) -> str:
    """A config value as cell keys, command lines and MLflow tags write it: strings bare, the rest compact JSON."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _experiment_id(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    return experiment.experiment_id if experiment is not None else client.create_experiment(name)


def parent_run(client: MlflowClient, sweep: str, grid_file: str) -> str:
    """The sweep's parent run, created on the first run of the sweep and reused by every re-run."""
    experiment_id = _experiment_id(client, sweep)
    found = client.search_runs(
        [experiment_id], filter_string=f"tags.`{SWEEP_TAG}` = '{sweep}' and tags.`{ROLE_TAG}` = 'parent'", max_results=1
    )
    if found:
        return found[0].info.run_id
    run = client.create_run(experiment_id, run_name=f"sweep {sweep}", tags={SWEEP_TAG: sweep, ROLE_TAG: "parent"})
    client.set_tag(run.info.run_id, "evf.grid_file", grid_file)
    return run.info.run_id


def cell_runs(client: MlflowClient, sweep: str, status: str | None = "FINISHED") -> list[Run]:
    """Child runs of a sweep (finished ones by default), oldest first."""
    experiment = client.get_experiment_by_name(sweep)
    if experiment is None:
        return []
    query = f"tags.`{SWEEP_TAG}` = '{sweep}' and tags.`{ROLE_TAG}` = 'cell'"
    if status:
        query += f" and attributes.status = '{status}'"
    return client.search_runs([experiment.experiment_id], filter_string=query, order_by=["attributes.start_time ASC"])


def spell_overrides(overrides: dict[str, Any]) -> str:
    """The overrides as one canonical string (sorted keys), so the same overrides always tag alike."""
    return json.dumps(overrides, sort_keys=True, separators=(",", ":"))


def finished_cells(client: MlflowClient, sweep: str, overrides: dict[str, Any]) -> set[str]:
    """Keys of the cells that finished under exactly these overrides: a cell run with other overrides (another
    data root, more steps) is another experiment, so it does not count (nor does a run from before the tag)."""
    spelled = spell_overrides(overrides)
    return {run.data.tags[CELL_TAG] for run in cell_runs(client, sweep) if run.data.tags.get(OVERRIDES_TAG) == spelled}


def mark_parent(client: MlflowClient, parent_id: str, status: Literal["RUNNING", "FINISHED", "FAILED"]) -> None:
    """Set the parent run's status: RUNNING while cells are missing, FINISHED once all are, FAILED after a failure."""
    if status == "RUNNING":
        client.update_run(parent_id, status=status)
    else:
        client.set_terminated(parent_id, status=status)


def cell_tags(
    sweep: str,
    parent_id: str | None,
    index: int,
    key: str,
    label: str,
    axes: dict[str, str],
    overrides: dict[str, Any],
) -> dict[str, str]:
    """What a cell's run is tagged with: its sweep, its identity (key and overrides), its parent, each axis value."""
    tags = {SWEEP_TAG: sweep, ROLE_TAG: "cell", CELL_TAG: key, CELL_INDEX_TAG: str(index), CELL_LABEL_TAG: label}
    tags[OVERRIDES_TAG] = spell_overrides(overrides)
    if parent_id:
        tags[PARENT_TAG] = parent_id
    return {**tags, **{f"{AXIS_TAG_PREFIX}{name}": value for name, value in axes.items()}}
