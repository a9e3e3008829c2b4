"""One training or evaluation source of a data config, and the registry of readers that read each kind.

A source names a reader (its `kind`) and the reader's own arguments; `ratio` weighs it in the training
mixture and `prepared` points at its prepared Arrow index (`evf data prepare`). Readers are imported
lazily by module path, so a config parses without importing every format's reader.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from evf_lightning.data.expression_dataset import SampleReader

# The formats of the multitask data beside the refer datasets; `evf data synth --formats` writes each.
MultitaskKind = Literal["grefcoco", "ade20k", "objects365", "part_imagenet", "pascal_part", "human_parsing"]
SourceKind = Literal["refer", MultitaskKind]


@dataclass(frozen=True)
class ReaderEntry:
    """Where a kind's reader lives, which `Source` fields it takes as keyword arguments, and their defaults
    (the reader's own, repeated so that a source's name is known without importing the reader)."""

    module: str
    name: str
    defaults: dict[str, str] = field(default_factory=dict)

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.defaults)

    def load(self) -> type:
        return getattr(importlib.import_module(self.module), self.name)


# Constructor signatures of the issue-4 contract: Reader(root, **{field: value}).
READERS: dict[str, ReaderEntry] = {
    "refer": ReaderEntry(
        "evf_lightning.data.refer", "ReferDataset", {"dataset": "refcoco", "split_by": "unc", "split": "train"}
    ),
    "grefcoco": ReaderEntry("evf_lightning.data.grefcoco", "GRefCocoReader", {"split_by": "unc", "split": "train"}),
    "ade20k": ReaderEntry("evf_lightning.data.ade20k", "Ade20kReader", {"split": "training"}),
    "objects365": ReaderEntry("evf_lightning.data.objects365", "Objects365Reader"),
    "part_imagenet": ReaderEntry("evf_lightning.data.part_imagenet", "PartImageNetReader", {"split": "train"}),
    "pascal_part": ReaderEntry("evf_lightning.data.pascal_part", "PascalPartReader"),
    "human_parsing": ReaderEntry("evf_lightning.data.human_parsing", "HumanParsingReader"),
}
_ARGUMENTS = ("dataset", "split_by", "split")


@dataclass(frozen=True)
class Source:
    """One dataset split to read, e.g. `{dataset: refcoco, split_by: unc, split: train}` (kind refer, the
    default) or `{kind: ade20k, ratio: 3}`.

    `dataset` and `split_by` are refer's (gRefCOCO takes `split_by` too); `split` is every kind's that has
    splits; an unset one takes the reader's default. `ratio` is the train mixture weight (normalised over
    the train sources; unset counts as 1). `prepared` is a prepared index folder, relative to `data.root`
    unless absolute; with it the source reads the index instead of parsing the raw annotation files.
    """

    kind: SourceKind = "refer"
    dataset: str | None = None
    split_by: str | None = None
    split: str | None = None
    ratio: float | None = None
    prepared: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in READERS:
            raise ValueError(f"unknown source kind {self.kind!r}; expected one of {list(READERS)}")
        entry = READERS[self.kind]
        for name in _ARGUMENTS:
            value = getattr(self, name)
            if name not in entry.defaults:
                if value is not None:
                    takes = f"takes only {list(entry.fields)}" if entry.fields else "takes no reader arguments"
                    raise ValueError(f"a {self.kind} source has no {name} (got {value!r}); it {takes}")
            elif value is None:
                object.__setattr__(self, name, entry.defaults[name])
        if self.ratio is not None and not (math.isfinite(self.ratio) and self.ratio > 0):
            raise ValueError(
                f"source {self.name}: ratio must be a positive number, got {self.ratio}; leave a source out to skip it"
            )

    @property
    def arguments(self) -> dict[str, str]:
        """The reader's keyword arguments besides `root`."""
        return {name: getattr(self, name) for name in READERS[self.kind].fields}

    @property
    def name(self) -> str:
        """refcoco_unc_train for refer (as metric names use it), else the kind and its arguments: ade20k_training."""
        head = [] if self.kind == "refer" else [self.kind]
        return "_".join(head + list(self.arguments.values()))

    def prepared_path(self, root: str | Path) -> Path | None:
        if self.prepared is None:
            return None
        return Path(root) / self.prepared  # an absolute `prepared` replaces root

    def raw_reader(self, root: str | Path) -> SampleReader:
        """The reader over the raw files: the source of truth, and what `evf data prepare` reads."""
        return READERS[self.kind].load()(root, **self.arguments)

    def reader(self, root: str | Path) -> SampleReader:
        """The prepared index where `prepared` is set, else the raw reader."""
        path = self.prepared_path(root)
        if path is None:
            return self.raw_reader(root)
        from evf_lightning.data.prepared import PreparedReader

        return PreparedReader(path, root, expect=self)
