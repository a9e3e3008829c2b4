"""`evf sweep GRID`: every cell of an ablation grid as a tracked `evf fit`, resumable, local or on a cluster."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from evf_lightning.commands.grid import Cell, Grid, in_process_cli, load_grid, validate_cell
from evf_lightning.commands.sweep_emit import slurm_array, torchrun_commands

log = logging.getLogger(__name__)


class SweepFailed(RuntimeError):
    """Some cells failed; the others ran. Re-running the sweep retries only the cells that did not finish."""


@dataclass
class SweepReport:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    emitted: Path | None = None


def sweep(
    file: Path,
    *,
    emit: Literal["slurm", "torchrun"] | None = None,
    cell: int | None = None,
    max_cells: int | None = None,
    overrides: dict[str, Any] | None = None,
    tracking_uri: str | None = None,
    output: Path | None = None,
    nodes: int = 1,
    devices: int = 1,
) -> SweepReport:
    """Run the cells of an ablation grid that have not finished yet, one after another, each an MLflow run.

    Every cell's config is parsed before any run starts, so an axis naming a key that does not exist or a
    value of the wrong type fails at once, naming the key. Cells are runs of the MLflow experiment named by
    the grid, children of one parent run, tagged with their axes; a cell that already finished (same
    sweep name, cell key and overrides) is skipped, so an interrupted sweep is finished by running it again.
    The parent run is FINISHED once every cell has finished, FAILED when a cell of this invocation failed,
    and RUNNING while cells are missing.

    Args:
        file: the grid file (experiments/*.yaml).
        emit: instead of running, write a SLURM job-array script or torchrun command lines (one per cell).
        cell: run only this cell (its index in the grid), as each task of an emitted job does.
        max_cells: stop after running this many cells (finished ones not counted).
        overrides: dotted config keys -> values applied to every cell, e.g. '{"data.root": "/data"}'.
        tracking_uri: MLflow tracking URI (default: MLFLOW_TRACKING_URI, else ./mlflow.db).
        output: where --emit writes its script (default: <grid name>.sbatch or <grid name>.torchrun.sh).
        nodes: nodes per cell for --emit.
        devices: devices (GPUs) per node for --emit.
    """
    from lightning.pytorch.utilities.rank_zero import rank_zero_only
    from mlflow.tracking import MlflowClient

    from evf_lightning.tracking.logger import default_tracking_uri
    from evf_lightning.tracking.sweep_runs import finished_cells, mark_parent, parent_run

    grid = load_grid(file)
    overrides = overrides or {}
    if cell is not None and not 0 <= cell < len(grid.cells):
        raise ValueError(f"--cell {cell}: {grid.path.name} has cells 0..{len(grid.cells) - 1}")
    selected = grid.cells if cell is None else (grid.cells[cell],)
    for each in selected:
        validate_cell(grid, each, overrides)
    uri = tracking_uri or default_tracking_uri()
    client = MlflowClient(uri)
    report = SweepReport()
    # One parent per sweep; on a multi-process cell only rank 0 logs, so only rank 0 needs (or makes) it.
    parent = parent_run(client, grid.name, str(grid.path)) if rank_zero_only.rank == 0 else None
    if emit is not None:
        write = slurm_array if emit == "slurm" else torchrun_commands
        report.emitted = output or Path(f"{grid.name}.{'sbatch' if emit == 'slurm' else 'torchrun.sh'}")
        report.emitted.write_text(write(grid, overrides, uri, nodes, devices))
        print(f"{emit} launcher for {len(grid.cells)} cells of {grid.name}: {report.emitted}")
        return report

    if parent is not None:
        mark_parent(client, parent, "RUNNING")
    done = finished_cells(client, grid.name, overrides)
    for each in selected:
        if each.key in done:
            report.skipped.append(each.key)
            continue
        if max_cells is not None and len(report.ran) + len(report.failed) >= max_cells:
            break
        log.info("sweep %s: cell %d/%d %s", grid.name, each.index + 1, len(grid.cells), each.key)
        try:
            _fit_cell(grid, each, overrides, uri, parent)
            report.ran.append(each.key)
        except Exception as error:  # a failed cell must not cost the others; it is retried on the next run
            log.exception("sweep %s: cell %s failed", grid.name, each.key)
            report.failed[each.key] = f"{type(error).__name__}: {error}"
    if parent is not None:
        complete = {cell.key for cell in grid.cells} <= finished_cells(client, grid.name, overrides)
        mark_parent(client, parent, "FAILED" if report.failed else "FINISHED" if complete else "RUNNING")
    print(
        f"sweep {grid.name}: {len(report.ran)} ran, {len(report.skipped)} already finished, "
        f"{len(report.failed)} failed, {len(selected) - len(report.ran) - len(report.skipped) - len(report.failed)} "
        f"left; runs in {uri}"
    )
    if report.failed:
        raise SweepFailed(f"sweep {grid.name}: cells failed: {json.dumps(report.failed, indent=2)}")
    return report


def _fit_cell(grid: Grid, cell: Cell, overrides: dict[str, Any], uri: str, parent: str | None) -> None:
    """`evf fit` in this process, its MLflow run named, parented and tagged as the cell."""
    from evf_lightning.cli import main
    from evf_lightning.tracking.sweep_runs import cell_tags, spell

    axes = {key: spell(value) for key, value in cell.values.items()}
    logger = {
        "class_path": "evf_lightning.tracking.logger.EvfMLFlowLogger",
        "init_args": {
            "experiment_name": grid.name,
            "run_name": cell.label if len(cell.label) < 200 else f"cell {cell.index}",
            "tracking_uri": uri,
            "tags": cell_tags(grid.name, parent, cell.index, cell.key, cell.label, axes, overrides),
        },
    }
    with in_process_cli():
        main(["fit", *grid.fit_args(cell, overrides), "--trainer.logger", json.dumps(logger)])
