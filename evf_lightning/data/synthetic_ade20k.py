"""Synthetic ADE20K in the real on-disk layout: JPEGs, mode "L" label PNGs, the 150-name class list.

Each image is the refer generator's shapes (`synthetic.layout`) on a floor and, half the time, a wall band,
with the rest left unlabelled (value 0, never prompted). A shape's class follows from its look, one ADE thing
class per (shape, colour) pair, so two alike shapes make one semantic mask, as in real scene parsing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from evf_lightning.data.ade20k import ADE20K_CLASSES, CLASSES_FILE
from evf_lightning.data.label_map import LabelMapSummary, LabelPart, write_label_pair
from evf_lightning.data.synthetic import COLOURS, SHAPES, layout

# Stored values (class index + 1) of the things, per (shape, colour); the last is 150 ("flag"), the top of the list.
THING_VALUES: dict[tuple[str, str], int] = dict(
    zip(((s, c) for s in SHAPES for c in COLOURS), (13, 21, 20, 16, 37, 8, 24, 42, 99, 136, 149, 150), strict=True)
)
FLOOR, WALL = 4, 1
_STUFF_COLOURS = {FLOOR: (140, 100, 60), WALL: (175, 175, 200)}
_FILE_PREFIX = {"training": "ADE_train", "validation": "ADE_val"}


def _band(value: int, top: float, bottom: float, width: int) -> LabelPart:
    polygon = np.array([[0.0, top], [width, top], [width, bottom], [0.0, bottom]])
    return LabelPart(value, polygon, _STUFF_COLOURS[value])


def write_synthetic_ade20k(
    root: str | Path,
    *,
    images: int,
    seed: int,
    validation_images: int = 1,
    image_size: tuple[int, int] = (96, 128),
) -> LabelMapSummary:
    """Write `images` training and `validation_images` validation pairs plus `ade20k_classes.json` under
    `<root>/ade20k`. image_size: (height, width) each image varies around by up to 15%. The same arguments
    write the same bytes."""
    root = Path(root)
    folder = root / "ade20k"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CLASSES_FILE).write_text(json.dumps(list(ADE20K_CLASSES)))
    rng = np.random.default_rng([seed, 150])
    values: dict[str, tuple[int, ...]] = {}
    for split, count in (("training", images), ("validation", validation_images)):
        for number in range(1, count + 1):
            height, width = (round(side * float(rng.uniform(0.85, 1.15))) for side in image_size)
            parts = [_band(FLOOR, height * float(rng.uniform(0.7, 0.85)), height, width)]
            if rng.random() < 0.5:
                parts.append(_band(WALL, 0.0, height * float(rng.uniform(0.2, 0.35)), width))
            for obj in layout(rng, height, width, min(image_size) / 96.0):
                parts.append(LabelPart(THING_VALUES[(obj.shape, obj.colour)], obj.outline(), COLOURS[obj.colour]))
            stem = f"{_FILE_PREFIX[split]}_{number:08d}"
            label_path = folder / "annotations" / split / f"{stem}.png"
            label = write_label_pair(folder / "images" / split / f"{stem}.jpg", label_path, parts, height, width, rng)
            values[label_path.relative_to(root).as_posix()] = tuple(np.unique(label).tolist())
    return LabelMapSummary(root, values)
