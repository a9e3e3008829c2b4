"""Synthetic Objects365 in EVF-SAM's layout: `o365_res_instances.json` with SAM-2-style RLE masks (datasets.md §6).

Built the way the authors built theirs: an image keeps only the categories that occur once in it (a shape whose
twin is in the picture is painted but not annotated), and each kept annotation's `segmentation` is a list holding
one compressed RLE with `counts` as str.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evf_lightning.data.objects365 import ANNOTATION_FILE, DATA_DIR
from evf_lightning.data.synthetic_coco import CocoWriter, SynthCocoSummary, appearance, make_scene

# Real Objects365 v1 names with their quirks (a slash, a space, upper case, a trailing space), one per
# appearance; the ids are this fixture's own.
CATEGORY_NAMES = (
    "person", "chair", "cabinet/shelf", "CD", "pine apple", "tissue ",
    "sneakers", "hat", "lamp", "bottle", "cup", "car",
)  # fmt: skip


def write_synthetic_objects365(
    root: str | Path, *, images: int, seed: int, image_size: tuple[int, int] = (96, 128)
) -> SynthCocoSummary:
    """Write `images` training images and their json under `<root>/Object365/raw/Objects365_v1/2019-08-02/`.

    Every image keeps at least one category (the official loader crashes on an image without annotations).
    The same arguments write the same bytes.
    """
    root = Path(root)
    folder = root / DATA_DIR
    rng = np.random.default_rng([seed, 365])
    writer = CocoWriter()
    while len(writer.images) < images:
        scene = make_scene(rng, image_size)
        keys = [appearance(obj) for obj in scene.objects]
        kept = [which for which, key in enumerate(keys) if keys.count(key) == 1]
        if not kept:
            continue
        image_id = len(writer.images) + 1
        writer.add_image(image_id, f"obj365_train_{image_id:012d}.jpg", folder / "train", scene)
        for which in kept:
            ann_id = writer.add_shape(image_id, keys[which] + 1, scene, which, "rle_list")
            writer.add_prompt(image_id, CATEGORY_NAMES[keys[which]], [ann_id])
    categories = [{"id": key + 1, "name": name} for key, name in enumerate(CATEGORY_NAMES)]
    return writer.write(root, folder / ANNOTATION_FILE, categories)
