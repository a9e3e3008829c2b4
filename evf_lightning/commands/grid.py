"""Ablation grids: a base experiment plus axes of dotted config keys, expanded into cells and checked up front.

A grid file (`experiments/*.yaml`) holds

    name: toy_table4                 # the MLflow experiment of every cell (default: the file's stem)
    base: ../configs/experiments/quickstart.yaml
    fixed: {trainer.max_steps: 20}   # overrides shared by every cell (not part of a cell's identity)
    cells:                           # an explicit list of cells ...
      - {model.model.prompt_encoder.fusion: text}
      - {model.model.prompt_encoder.fusion: late}
    axes:                            # ... times the cartesian product of the axes
      seed_everything: [0, 1]

Paths (`base`, and any value ending in .yaml) are relative to the grid file. A cell is identified by its
values alone (its `key`), which is how a re-run finds the cells that already finished.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from evf_lightning.tracking.sweep_runs import spell

GRID_FIELDS = ("name", "base", "fixed", "cells", "axes")
# The axis over which `evf compare` shows a spread rather than separate rows.
SEED_KEY = "seed_everything"


class GridError(ValueError):
    """A grid file that cannot be expanded, or a cell whose config does not parse; says file, cell and key."""


def override_args(values: dict[str, Any]) -> list[str]:
    return [arg for key, value in values.items() for arg in (f"--{key}", spell(value))]


@dataclass(frozen=True)
class Cell:
    """One run of a grid: the config values that set it apart from the base."""

    index: int
    values: dict[str, Any]

    @property
    def key(self) -> str:
        return ";".join(f"{key}={spell(value)}" for key, value in self.values.items()) or "base"

    @property
    def label(self) -> str:
        """The key without the seed: cells that differ only in their seed are one row of a table."""
        return ";".join(f"{k}={spell(v)}" for k, v in self.values.items() if k != SEED_KEY) or "base"


@dataclass(frozen=True)
class Grid:
    path: Path
    name: str
    base: Path
    fixed: dict[str, Any]
    cells: tuple[Cell, ...]

    def fit_args(self, cell: Cell, extra: dict[str, Any] | None = None) -> list[str]:
        """`evf fit` arguments of a cell: base config, shared overrides, then the cell's own values."""
        return [
            "--config",
            str(self.base),
            *override_args({**self.fixed, **(extra or {})}),
            *override_args(cell.values),
        ]


def _resolve_paths(values: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Relative .yaml paths in values name files beside the grid, wherever `evf sweep` runs from."""
    return {
        key: str((folder / value).resolve()) if isinstance(value, str) and value.endswith((".yaml", ".yml")) else value
        for key, value in values.items()
    }


def _mapping(raw: Any, what: str, path: Path) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(key, str) for key in raw):
        raise GridError(f"{path}: {what} must map dotted config keys to values, got {raw!r}")
    return raw


def load_grid(path: Path) -> Grid:
    """Parse and expand a grid file; structural mistakes fail here, naming the field."""
    path = Path(path).resolve()
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise GridError(f"{path}: a grid file is a mapping with {list(GRID_FIELDS)}")
    unknown = sorted(set(raw) - set(GRID_FIELDS))
    if unknown:
        raise GridError(f"{path}: unknown field(s) {unknown}; a grid file has {list(GRID_FIELDS)}")
    if "base" not in raw:
        raise GridError(f"{path}: field 'base' (the experiment every cell starts from) is missing")
    base = (path.parent / raw["base"]).resolve()
    if not base.is_file():
        raise GridError(f"{path}: base {raw['base']!r} does not exist (looked at {base})")
    fixed = _resolve_paths(_mapping(raw.get("fixed"), "fixed", path), path.parent)
    axes = _mapping(raw.get("axes"), "axes", path)
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            raise GridError(f"{path}: axis {key!r} must be a non-empty list of values, got {values!r}")
    listed = raw.get("cells") or [{}]
    if not isinstance(listed, list):
        raise GridError(f"{path}: cells must be a list of mappings, got {listed!r}")
    cells: list[Cell] = []
    for combination in itertools.product(listed, *axes.values()):
        explicit = _mapping(combination[0], "each of cells", path)
        clash = sorted((set(explicit) | set(axes)) & set(fixed)) or sorted(set(explicit) & set(axes))
        if clash:
            raise GridError(f"{path}: key(s) {clash} are set twice (in fixed, cells or axes)")
        values = {**explicit, **dict(zip(axes, combination[1:], strict=True))}
        cells.append(Cell(len(cells), _resolve_paths(values, path.parent)))
    keys = [cell.key for cell in cells]
    if len(set(keys)) != len(keys):
        raise GridError(f"{path}: cells repeat: {sorted(k for k in set(keys) if keys.count(k) > 1)}")
    return Grid(path, str(raw.get("name") or path.stem), base, fixed, tuple(cells))


@contextlib.contextmanager
def in_process_cli() -> Iterator[None]:
    """LightningCLI given `args` inside another command: its own sys.argv is not a mistake here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        yield


def validate_cell(grid: Grid, cell: Cell, extra: dict[str, Any] | None = None) -> None:
    """Parse the cell's whole config as `evf fit` would, and build its model config (no weights, no data).

    An axis naming a key the config lacks (a BEiT-3 field on a CLIP encoder, say), or a value of the wrong type,
    raises GridError naming the key.
    """
    from evf_lightning.training.lightning_cli import EvfCLI, model_config

    where = f"{grid.path.name}: cell {cell.index} ({cell.key})"
    errors = io.StringIO()
    try:
        with in_process_cli(), contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            config = EvfCLI(args=grid.fit_args(cell, extra), run=False, instantiate=False).config
    except SystemExit:
        message = errors.getvalue().rsplit("error:", 1)[-1].strip()
        raise GridError(f"{where}: {message}") from None
    try:
        model_config(config.model.model)
    except (ValueError, TypeError) as error:
        raise GridError(f"{where}: {error}") from None
