"""`evf data prepare`: write a prepared Arrow index for every source of a data config."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    from evf_lightning.data.datamodule import EvfDataModule
    from evf_lightning.data.sources import Source


def load_data_config(config: Path) -> EvfDataModule:
    """The data module of a data config (configs/data/*.yaml), or of an experiment config's `data` section
    (inline, or a path relative to the experiment file, as `evf fit` reads it)."""
    from jsonargparse import ArgumentParser

    from evf_lightning.data.datamodule import EvfDataModule

    parser = ArgumentParser(parser_mode="omegaconf", exit_on_error=False)
    parser.add_class_arguments(EvfDataModule, "data")
    content = yaml.safe_load(Path(config).read_text())
    if isinstance(content, dict) and "data" in content:  # an experiment
        data = content["data"]
        if isinstance(data, str):
            parsed = parser.parse_args(["--data", str(Path(config).parent / data)])
        else:
            parsed = parser.parse_object({"data": data})
    else:
        parsed = parser.parse_args(["--data", str(config)])
    return parser.instantiate(parsed).data


def unique_sources(datamodule: EvfDataModule) -> list[Source]:
    """Train, val and test sources, each (kind, arguments) once, in config order."""
    seen: dict[tuple[str, tuple[tuple[str, str], ...]], Source] = {}
    for source in datamodule.train_splits + datamodule.val_splits + datamodule.test_splits:
        seen.setdefault((source.kind, tuple(source.arguments.items())), source)
    return list(seen.values())


def prepare(data_config: Path, out: Path | None = None, workers: int = 1) -> None:
    """Write a prepared Arrow index of every source of DATA_CONFIG, read from its raw files.

    DATA_CONFIG is a data config or an experiment config. Each source is read once through its raw reader
    (the source of truth) and written as an Arrow dataset: image path relative to data.root, prompts,
    COCO-RLE masks and image size. Training then memory-maps it instead of parsing the annotation
    files, in every worker and rank. A source that names `prepared` is written there; the others to
    OUT/<source name>. Run it again after the raw data changes.

    Args:
        data_config: a data config (configs/data/*.yaml) or an experiment config with a data section.
        out: folder for the indexes of sources without `prepared` (default: <data.root>/prepared).
        workers: processes reading images in parallel.
    """
    from evf_lightning.data.prepared import prepare as prepare_index

    datamodule = load_data_config(data_config)
    root = datamodule.root
    out = Path(out) if out is not None else root / "prepared"
    added: list[tuple[str, Path]] = []
    for source in unique_sources(datamodule):
        destination = source.prepared_path(root) or out / source.name
        start = time.perf_counter()
        reader = source.raw_reader(root)
        summary = prepare_index(
            reader, root, destination, kind=source.kind, arguments=source.arguments, workers=workers
        )
        print(
            f"{source.name}: {summary.images} images, {summary.prompts} prompts, {summary.masks} distinct masks "
            f"-> {destination} ({time.perf_counter() - start:.1f} s)"
        )
        if source.prepared is None:
            added.append((source.name, destination))
    if added:
        print("To read them, add to each source of the config:")
        for name, destination in added:
            shown = destination.relative_to(root) if destination.is_relative_to(root) else destination.absolute()
            print(f"  {name}: prepared: {shown}")
