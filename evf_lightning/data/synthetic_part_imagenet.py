"""Synthetic PartImageNet in the released layout: COCO json with polygons, 40 part categories (datasets.md §7).

Each appearance (shape and colour) is one part category, so instances of a part in an image merge into one
prompt. The first image also carries an annotation with `"segmentation": []`, as some released ones do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evf_lightning.data.part_imagenet import part_imagenet_prompt
from evf_lightning.data.synthetic_coco import CocoWriter, SynthCocoSummary, make_scene

# The release's 40 categories, ids 0..39 in this order; "Tier" is the dataset's spelling.
PARTS: dict[str, tuple[str, ...]] = {
    "Quadruped": ("Head", "Body", "Foot", "Tail"),
    "Biped": ("Head", "Body", "Hand", "Foot", "Tail"),
    "Fish": ("Head", "Body", "Fin", "Tail"),
    "Bird": ("Head", "Body", "Wing", "Foot", "Tail"),
    "Snake": ("Head", "Body"),
    "Reptile": ("Head", "Body", "Foot", "Tail"),
    "Car": ("Body", "Tier", "Side Mirror"),
    "Bicycle": ("Body", "Head", "Seat", "Tier"),
    "Boat": ("Body", "Sail"),
    "Aeroplane": ("Head", "Body", "Engine", "Wing", "Tail"),
    "Bottle": ("Mouth", "Body"),
}
CATEGORIES = [
    {"id": i, "name": f"{supercategory} {part}", "supercategory": supercategory}
    for i, (supercategory, part) in enumerate((s, p) for s, parts in PARTS.items() for p in parts)
]
# The category each appearance is drawn as; id 0 (falsy) included on purpose.
DRAWN = (0, 2, 5, 9, 13, 15, 20, 25, 28, 32, 35, 38)
EMPTY_CATEGORY = 1  # the category of the empty annotation: never drawn, so it must give no prompt
SYNSET = "n01440764"


def write_synthetic_part_imagenet(
    root: str | Path, *, images: int, seed: int, split: str = "train", image_size: tuple[int, int] = (96, 128)
) -> SynthCocoSummary:
    """Write `images` images of `split` and `annotations/<split>/<split>.json` under `<root>/PartImageNet/`.

    The same arguments write the same bytes.
    """
    root = Path(root)
    folder = root / "PartImageNet"
    rng = np.random.default_rng([seed, 11])
    names = {category["id"]: category["name"] for category in CATEGORIES}
    writer = CocoWriter()
    for image_id in range(1, images + 1):
        scene = make_scene(rng, image_size)
        writer.add_image(image_id, f"{SYNSET}_{image_id}.JPEG", folder / "images" / split, scene)
        writer.add_parts(image_id, scene, DRAWN, names, part_imagenet_prompt, "polygons")
        if image_id == 1:
            empty = {"segmentation": [], "area": 0.0, "bbox": [0.0, 0.0, 0.0, 0.0], "iscrowd": 0}
            writer.add_annotation(image_id, EMPTY_CATEGORY, empty)
    return writer.write(root, folder / "annotations" / split / f"{split}.json", CATEGORIES)
