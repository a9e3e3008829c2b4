"""`evf data show`: what a data config reads, the mixture it realises, and a grid of what training sees."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from evf_lightning.commands.data_prepare import load_data_config

if TYPE_CHECKING:  # torch and Lightning load only when the verb runs, not for `evf --help`
    from evf_lightning.data.datamodule import EvfDataModule
    from evf_lightning.data.expression_dataset import SampleReader
    from evf_lightning.data.sampler import Draw

# Mask colours of the grid (RGB), one per prompt of an image, in prompt order.
COLOURS = np.array(
    [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240)], dtype=np.float32
)


def count(reader: SampleReader) -> tuple[str, str]:
    """Images and prompts of a source, as table cells."""
    return str(len(reader)), str(sum(reader.num_expressions(index) for index in range(len(reader))))


def realised_shares(draws: list[Draw], sizes: list[int]) -> np.ndarray:
    """The fraction of `draws` that fell on each source of `sizes` images (in concatenation order)."""
    bounds = np.cumsum(sizes)
    sources = np.searchsorted(bounds, [draw.index for draw in draws], side="right")
    return np.bincount(sources, minlength=len(sizes)) / max(len(draws), 1)


def show(data_config: Path, draws: int = 10000, grid: Path | None = None, samples: int = 12, epoch: int = 0) -> None:
    """Print per-source counts and the realised training mixture; optionally write a grid of samples.

    For every train source: images, prompts, the configured share of draws (normalised ratios) and the
    share realised over DRAWS draws of EPOCH, drawn exactly as training draws them (rank 0 of 1). Val and
    test sources are counted too. With GRID, the first SAMPLES training draws are drawn as a PNG grid: each
    image with the prompts training would read and their masks overlaid, each prompt in its mask's colour.

    Args:
        data_config: a data config (configs/data/*.yaml) or an experiment config with a data section.
        draws: how many training draws to realise the mixture over.
        grid: PNG file to write the sample grid to (optional).
        samples: how many training draws the grid shows.
        epoch: which epoch's draws to realise and show.
    """
    from rich.console import Console
    from rich.table import Table

    datamodule = load_data_config(data_config)
    train = datamodule.readers(datamodule.train_splits)
    sizes = [len(reader) for reader in train]
    sampler = datamodule.train_sampler(sizes, samples_per_epoch=draws)
    sampler.set_epoch(epoch)
    drawn = list(sampler)
    realised = realised_shares(drawn, sizes)
    ratios = [1.0 if s.ratio is None else s.ratio for s in datamodule.train_splits]
    configured = np.asarray(ratios) / sum(ratios) if datamodule.mixes else np.asarray(sizes) / max(sum(sizes), 1)
    how = (
        f"a mixture, {len(drawn)} draws of epoch {epoch} (seed {datamodule.seed})"
        if datamodule.mixes
        else f"one source, each image once per epoch in a seeded shuffle ({len(drawn)} draws, seed {datamodule.seed})"
    )
    print(f"{data_config}: data under {datamodule.root}")
    print(f"training: {how}")
    table = Table()
    for column in ("split", "source", "images", "prompts", "configured", "realised"):
        table.add_column(column, justify="left" if column in ("split", "source") else "right")
    for i, (source, reader) in enumerate(zip(datamodule.train_splits, train, strict=True)):
        table.add_row("train", source.name, *count(reader), f"{100 * configured[i]:.1f}%", f"{100 * realised[i]:.1f}%")
    for split, sources in (("val", datamodule.val_splits), ("test", datamodule.test_splits)):
        for source, reader in zip(sources, datamodule.readers(sources), strict=True):
            table.add_row(split, source.name, *count(reader), "", "")
    Console(width=160).print(table)
    if grid is not None:
        picked = drawn[:samples]
        write_grid(grid, datamodule, train, picked)
        print(f"grid of {len(picked)} training draws: {grid}")


def write_grid(path: Path, datamodule: EvfDataModule, readers: list[SampleReader], draws: list[Draw]) -> None:
    """A PNG of the drawn images with the prompts training reads for them, masks overlaid in their colours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from evf_lightning.data.expression_dataset import choose_expressions

    offsets = np.cumsum([0] + [len(reader) for reader in readers])
    cells = []
    for draw in draws:
        which = int(np.searchsorted(offsets, draw.index, side="right") - 1)
        reader, local = readers[which], draw.index - int(offsets[which])
        chosen = choose_expressions(
            reader.num_expressions(local), datamodule.expressions_per_image, datamodule.seed, draw
        )
        sample = reader.load(local, chosen)
        cells.append((datamodule.train_splits[which].name, local, sample))
    columns = min(4, max(len(cells), 1))
    rows = max(1, -(-len(cells) // columns))
    lines = max((len(sample.texts) for _, _, sample in cells), default=1)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, rows * (2.8 + 0.22 * lines)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (name, local, sample) in zip(axes.flat, cells, strict=False):
        ax.imshow(overlay(sample.image, sample.masks))
        for k, mask in enumerate(sample.masks):  # outlines: the tint alone hides where colour is the cue
            if mask.any():
                ax.contour(mask, levels=[0.5], colors=[COLOURS[k % len(COLOURS)] / 255.0], linewidths=1.5)
        ax.set_title(f"{name} [{local}]", fontsize=7)
        for k, text in enumerate(sample.texts):
            colour = COLOURS[k % len(COLOURS)] / 255.0
            wrapped = textwrap.shorten(text, width=48, placeholder="...")
            ax.annotate(wrapped, (0, 0), xycoords="axes fraction", xytext=(0, -3 - 10 * k),
                        textcoords="offset points", color=colour, fontsize=7, va="top")  # fmt: skip
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)


def overlay(image: np.ndarray, masks: np.ndarray, alpha: float = 0.3) -> np.ndarray:
    """The image with mask k tinted in colour k (later masks over earlier ones)."""
    out = image.astype(np.float32)
    for k, mask in enumerate(masks):
        where = mask.astype(bool)
        out[where] = (1 - alpha) * out[where] + alpha * COLOURS[k % len(COLOURS)]
    return out.round().astype(np.uint8)
