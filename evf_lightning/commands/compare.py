"""`evf compare EXPERIMENT`: the paper-style table of a sweep, read back from MLflow (never from log files).

Rows are cells (cells that differ only in their seed are one row, with mean and spread), columns are the
evaluation splits, values the metric each run logged last (its final validation).
"""

from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass
from pathlib import Path

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from evf_lightning.commands.grid import SEED_KEY, load_grid
from evf_lightning.tracking.sweep_runs import AXIS_TAG_PREFIX, CELL_INDEX_TAG, CELL_LABEL_TAG, cell_runs


@dataclass(frozen=True)
class Row:
    """One cell of the grid: its axis values and, per split, the metric of each of its runs (one per seed)."""

    label: str
    axes: dict[str, str]
    values: dict[str, list[float]]
    run_ids: tuple[str, ...]


@dataclass(frozen=True)
class ComparisonTable:
    experiment: str
    metric: str
    splits: tuple[str, ...]
    axes: tuple[str, ...]
    rows: tuple[Row, ...]

    def headers(self) -> list[str]:
        return [short_axis_names(self.axes)[axis] for axis in self.axes] + list(self.splits)

    def markdown(self) -> str:
        lines = [
            f"{self.experiment}: {self.metric} (mean ± std over seeds where there are several)",
            "",
            "| " + " | ".join(self.headers()) + " |",
            "|" + "---|" * len(self.axes) + "---:|" * len(self.splits),
        ]
        for row in self.rows:
            cells = [row.axes.get(axis, "") for axis in self.axes]
            cells += [format_spread(row.values.get(split, [])) for split in self.splits]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def write_csv(self, path: Path) -> None:
        """Numbers for other tools: per split its mean, standard deviation and number of runs."""
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            names = short_axis_names(self.axes)
            stats = [f"{split}/{stat}" for split in self.splits for stat in ("mean", "std", "runs")]
            writer.writerow([names[axis] for axis in self.axes] + stats)
            for row in self.rows:
                numbers: list[object] = []
                for split in self.splits:
                    values = row.values.get(split, [])
                    numbers += [mean(values), stdev(values), len(values)]
                writer.writerow([row.axes.get(axis, "") for axis in self.axes] + numbers)


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def stdev(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def format_spread(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{mean(values):.4f} ± {stdev(values):.4f} ({len(values)})"


def short_axis_names(axes: tuple[str, ...]) -> dict[str, str]:
    """`model.model.prompt_encoder.fusion` -> `fusion`, unless two axes would then share a name."""
    last = [axis.rsplit(".", 1)[-1] for axis in axes]
    return {axis: name if last.count(name) == 1 else axis for axis, name in zip(axes, last, strict=True)}


def metric_key(stage: str, split: str, metric: str) -> str:
    return f"{stage}/{split}/{metric}"


def _split_key(key: str) -> tuple[str, ...]:
    """`val/refcoco_unc_val/ciou` -> its three parts; other keys give a tuple that matches no (stage, metric)."""
    parts = tuple(key.split("/"))
    return parts if len(parts) == 3 else ()


def build_table(experiment: str, runs: list[Run], stage: str, metric: str) -> ComparisonTable:
    """Group finished cell runs by cell (seed aside), in grid order, with the splits they were scored on."""
    splits = sorted(
        {parts[1] for run in runs for parts in map(_split_key, run.data.metrics) if parts[::2] == (stage, metric)}
    )
    grouped: dict[str, list[Run]] = {}
    for run in sorted(runs, key=lambda r: int(r.data.tags[CELL_INDEX_TAG])):
        grouped.setdefault(run.data.tags[CELL_LABEL_TAG], []).append(run)
    axes: list[str] = []
    rows = []
    for label, members in grouped.items():
        row_axes = {
            tag[len(AXIS_TAG_PREFIX) :]: value
            for tag, value in members[0].data.tags.items()
            if tag.startswith(AXIS_TAG_PREFIX) and tag != AXIS_TAG_PREFIX + SEED_KEY
        }
        axes += [axis for axis in row_axes if axis not in axes]
        keys = {split: metric_key(stage, split, metric) for split in splits}
        values = {split: [r.data.metrics[key] for r in members if key in r.data.metrics] for split, key in keys.items()}
        rows.append(Row(label, row_axes, values, tuple(r.info.run_id for r in members)))
    return ComparisonTable(experiment, metric, tuple(splits), tuple(axes), tuple(rows))


def compare(
    experiment: str,
    *,
    metric: str = "ciou",
    stage: str = "val",
    output: Path | None = None,
    tracking_uri: str | None = None,
) -> ComparisonTable:
    """Write a sweep's table (markdown and CSV) and plots (metric per cell, validation curves) from MLflow.

    Args:
        experiment: the sweep's name, or its grid file (experiments/*.yaml).
        metric: the metric of each split to tabulate (ciou, giou, precision_0.5, ...).
        stage: val or test: which logged evaluation to read.
        output: folder for table.md, table.csv and the PNGs (default: compare/<experiment>).
        tracking_uri: MLflow tracking URI (default: MLFLOW_TRACKING_URI, else ./mlflow.db).
    """
    from evf_lightning.commands.compare_plots import plot_curves, plot_metric_per_cell
    from evf_lightning.tracking.logger import default_tracking_uri

    name = load_grid(Path(experiment)).name if experiment.endswith((".yaml", ".yml")) else experiment
    uri = tracking_uri or default_tracking_uri()
    client = MlflowClient(uri)
    runs = cell_runs(client, name)
    if not runs:
        raise LookupError(f"MLflow at {uri} has no finished cell of sweep {name!r}; run `evf sweep` first")
    table = build_table(name, runs, stage, metric)
    if not table.splits:
        raise LookupError(f"the runs of {name!r} logged no {metric_key(stage, '<split>', metric)} metric")
    folder = output or Path("compare") / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "table.md").write_text(table.markdown())
    table.write_csv(folder / "table.csv")
    plot_metric_per_cell(table, folder / f"{metric}_per_cell.png")
    histories = {
        (run_id, split): [
            (m.step, m.value) for m in client.get_metric_history(run_id, metric_key(stage, split, metric))
        ]
        for row in table.rows
        for run_id in row.run_ids
        for split in table.splits
    }
    plot_curves(table, histories, stage, folder / f"{stage}_curves.png")
    print(table.markdown())
    print(f"table and plots in {folder}")
    return table
