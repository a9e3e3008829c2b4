"""PNG plots of a comparison table: the metric per cell with its spread over seeds, and validation curves."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evf_lightning.commands.compare import ComparisonTable


def _pyplot():
    """matplotlib without a display: the headless Agg backend, chosen before pyplot is imported."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _row_names(table: ComparisonTable) -> list[str]:
    return [", ".join(row.axes.values()) or row.label for row in table.rows]


def plot_metric_per_cell(table: ComparisonTable, path: Path) -> None:
    """One panel per split: a bar per cell at the mean over seeds, its standard deviation, and each seed's dot."""
    from evf_lightning.commands.compare import mean, stdev

    plt = _pyplot()
    names = _row_names(table)
    figure, panels = plt.subplots(1, len(table.splits), figsize=(1.2 + 1.1 * len(names) * len(table.splits), 4))
    for panel, split in zip(list(getattr(panels, "flat", [panels])), table.splits, strict=True):
        values = [row.values.get(split, []) for row in table.rows]
        positions = range(len(names))
        panel.bar(positions, [mean(v) for v in values], yerr=[stdev(v) for v in values], capsize=4, alpha=0.7)
        for position, seeds in zip(positions, values, strict=True):
            panel.scatter([position] * len(seeds), seeds, color="black", s=12, zorder=3)
        panel.set_xticks(list(positions), names, rotation=30, ha="right", fontsize=8)
        panel.set_title(split, fontsize=9)
        panel.set_ylabel(table.metric)
    figure.suptitle(f"{table.experiment}: {table.metric} per cell")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_curves(
    table: ComparisonTable, histories: dict[tuple[str, str], list[tuple[int, float]]], stage: str, path: Path
) -> None:
    """One panel per split: every run's metric against the step, one colour per cell."""
    plt = _pyplot()
    figure, panels = plt.subplots(1, len(table.splits), figsize=(1 + 4.5 * len(table.splits), 4))
    colours = plt.get_cmap("tab10")
    for panel, split in zip(list(getattr(panels, "flat", [panels])), table.splits, strict=True):
        for index, (row, name) in enumerate(zip(table.rows, _row_names(table), strict=True)):
            for seed, run_id in enumerate(row.run_ids):
                points = sorted(histories.get((run_id, split), []))
                if points:
                    steps, values = zip(*points, strict=True)
                    panel.plot(steps, values, marker="o", color=colours(index % 10), label=name if seed == 0 else None)
        panel.set_title(split, fontsize=9)
        panel.set_xlabel("step")
        panel.set_ylabel(f"{stage} {table.metric}")
        panel.legend(fontsize=7)
    figure.suptitle(f"{table.experiment}: {stage} curves")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
