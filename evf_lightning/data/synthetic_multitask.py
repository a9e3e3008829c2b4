"""The multitask formats `evf data synth --formats` writes beside the refer data, each in its real on-disk layout.

One writer per source kind (sources.py), so a generated root reads through the same `Source` entries a real
one does. What each format holds is read back through its real reader, not taken from the writer's summary:
the counts printed and the sentences the tokenizer learns are then exactly the prompts training will see.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

from evf_lightning.data.label_map import LabelMapSummary
from evf_lightning.data.sources import MultitaskKind, Source
from evf_lightning.data.synthetic_ade20k import write_synthetic_ade20k
from evf_lightning.data.synthetic_coco import SynthCocoSummary
from evf_lightning.data.synthetic_grefcoco import write_synthetic_grefcoco
from evf_lightning.data.synthetic_human_parsing import write_synthetic_human_parsing
from evf_lightning.data.synthetic_objects365 import write_synthetic_objects365
from evf_lightning.data.synthetic_part_imagenet import write_synthetic_part_imagenet
from evf_lightning.data.synthetic_pascal_part import write_synthetic_pascal_part

FORMATS: tuple[str, ...] = get_args(MultitaskKind)
WRITERS: dict[str, Callable[..., SynthCocoSummary | LabelMapSummary]] = {
    "grefcoco": write_synthetic_grefcoco,
    "ade20k": write_synthetic_ade20k,
    "objects365": write_synthetic_objects365,
    "part_imagenet": write_synthetic_part_imagenet,
    "pascal_part": write_synthetic_pascal_part,
    "human_parsing": write_synthetic_human_parsing,
}


@dataclass(frozen=True)
class FormatSummary:
    """One written format as its training source reads it: images, their prompts (in reader order), and where the
    annotations went."""

    kind: str
    images: int
    prompts: tuple[str, ...]
    annotations: Path


def write_format(root: str | Path, kind: str, *, images: int, validation_images: int, seed: int) -> FormatSummary:
    """Write `images` training images of `kind` under `root` (ADE20K also `validation_images` validation ones),
    each format at its writer's own image size (human parsing is portrait)."""
    if kind not in WRITERS:
        raise ValueError(f"unknown multitask format {kind!r}; expected some of {list(FORMATS)}")
    extra = {"validation_images": validation_images} if kind == "ade20k" else {}
    written = WRITERS[kind](root, images=images, seed=seed, **extra)
    reader = Source(kind=kind).raw_reader(root)  # type: ignore[arg-type]
    prompts = tuple(text for index in range(len(reader)) for text in reader.texts(index))
    annotations = written.annotation_file if isinstance(written, SynthCocoSummary) else reader.label_dir
    return FormatSummary(kind, len(reader), prompts, annotations)
