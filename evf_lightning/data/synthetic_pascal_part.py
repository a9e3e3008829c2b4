"""Synthetic Pascal-Part in VLPart's layout: `train.json` with one RLE dict per part (datasets.md §9).

Real VLPart category ids and "object:part" names, one per appearance (shape and colour); VOC-style image names
(`2008_000001.jpg`, id 2008000001) and annotation ids from 0, as `pascal_part_mat2json.py` writes them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evf_lightning.data.pascal_part import DATA_DIR, IMAGE_DIR, pascal_part_prompt
from evf_lightning.data.synthetic_coco import CocoWriter, SynthCocoSummary, make_scene

CATEGORIES = [
    {"id": 1, "name": "aeroplane:body"},
    {"id": 9, "name": "bird:head"},
    {"id": 17, "name": "bottle:body"},
    {"id": 19, "name": "bus:license plate", "abbr": "bus:liplate"},
    {"id": 30, "name": "car:wheel"},
    {"id": 31, "name": "cat:head"},
    {"id": 50, "name": "dog:leg"},
    {"id": 78, "name": "person:arm"},
    {"id": 80, "name": "person:leg"},
    {"id": 83, "name": "potted plant:plant"},
    {"id": 84, "name": "potted plant:pot"},
    {"id": 93, "name": "sheep:torso"},
]


def write_synthetic_pascal_part(
    root: str | Path, *, images: int, seed: int, image_size: tuple[int, int] = (96, 128)
) -> SynthCocoSummary:
    """Write `images` JPEGs and `train.json` under `<root>/vlpart/pascal_part/`. Same arguments, same bytes."""
    root = Path(root)
    rng = np.random.default_rng([seed, 12])
    names = {category["id"]: category["name"] for category in CATEGORIES}
    drawn = [category["id"] for category in CATEGORIES]
    writer = CocoWriter(first_ann_id=0)
    for number in range(1, images + 1):
        scene = make_scene(rng, image_size)
        image_id = int(f"2008{number:06d}")
        writer.add_image(image_id, f"2008_{number:06d}.jpg", root / IMAGE_DIR, scene)
        writer.add_parts(image_id, scene, drawn, names, pascal_part_prompt, "rle")
    return writer.write(root, root / DATA_DIR / "train.json", CATEGORIES)
