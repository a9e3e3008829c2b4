"""Synthetic gRefCOCO in the released layout: `grefs(unc).json` + `instances.json` (datasets.md §3).

Each image gets RefCOCO-style single-target refs (the refer generator's sentences), one multi-target ref when
two or more shapes share a colour or a shape ("the red shapes", "both circles": `ann_id` lists every one of
them), and one no-target ref naming a colour and shape the image lacks (`ann_id` [-1], `no_target` true).
Images go to RefCOCO's COCO train2014 folder under ids from 3 000 001, clear of the refer generator's ranges.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from evf_lightning.data.refer import image_folder
from evf_lightning.data.synthetic import COLOURS, POSITION_MARGIN, SHAPES, describe
from evf_lightning.data.synthetic_coco import CocoWriter, Scene, SynthCocoSummary, make_scene, write_json

FIRST_IMAGE_ID = 3_000_001
NO_TARGET = -1


def _group_sentence(scene: Scene, rng: np.random.Generator) -> tuple[str, list[int]] | None:
    """A sentence for every shape of one colour, or of one shape, where two or more share it; else None."""
    groups = []
    for cue, values in (("colour", tuple(COLOURS)), ("shape", SHAPES)):
        for value in values:
            members = [i for i, obj in enumerate(scene.objects) if obj.cue(cue) == value]
            if len(members) >= 2:
                groups.append((cue, value, members))
    if not groups:
        return None
    cue, value, members = groups[int(rng.integers(len(groups)))]
    noun = f"{value} shapes" if cue == "colour" else f"{value}s"
    forms = [f"the {noun}", f"all {noun}"] + ([f"both {noun}"] if len(members) == 2 else [])
    return forms[int(rng.integers(len(forms)))], members


def _absent_sentence(scene: Scene, rng: np.random.Generator) -> str:
    present = {(obj.colour, obj.shape) for obj in scene.objects}
    absent = [(colour, shape) for colour in COLOURS for shape in SHAPES if (colour, shape) not in present]
    colour, shape = absent[int(rng.integers(len(absent)))]
    return f"the {colour} {shape}"


def write_synthetic_grefcoco(
    root: str | Path, *, images: int, seed: int, image_size: tuple[int, int] = (96, 128)
) -> SynthCocoSummary:
    """Write `images` train images, `instances.json` and `grefs(unc).json` under `root`. Same arguments, same bytes."""
    root = Path(root)
    folder = root / "refer_seg" / "grefcoco"
    rng = np.random.default_rng([seed, 13])
    writer = CocoWriter()
    refs: list[dict[str, Any]] = []
    sent_ids = itertools.count()

    def add_ref(image_id: int, texts: list[str], ann_ids: list[int], category_ids: list[int]) -> None:
        sentences = [
            {"sent": text, "raw": text[0].upper() + text[1:], "tokens": text.split(), "sent_id": next(sent_ids)}
            for text in texts
        ]
        refs.append(
            {"ref_id": len(refs), "ann_id": ann_ids, "image_id": image_id, "category_id": category_ids,
             "split": "train", "sentences": sentences, "sent_ids": [s["sent_id"] for s in sentences],
             "no_target": ann_ids == [NO_TARGET], "file_name": f"COCO_train2014_{image_id:012d}_{len(refs)}.jpg"}
        )  # fmt: skip
        for text in texts:
            writer.add_prompt(image_id, text, [] if ann_ids == [NO_TARGET] else ann_ids)

    for image_id in range(FIRST_IMAGE_ID, FIRST_IMAGE_ID + images):
        scene = make_scene(rng, image_size)
        writer.add_image(image_id, f"COCO_train2014_{image_id:012d}.jpg", root / image_folder("grefcoco"), scene)
        categories = [SHAPES.index(obj.shape) + 1 for obj in scene.objects]
        ann_ids = [writer.add_shape(image_id, c, scene, which, "polygons") for which, c in enumerate(categories)]
        margin = POSITION_MARGIN * min(scene.height, scene.width)
        for which in range(len(scene.objects)):
            add_ref(image_id, describe(which, scene.objects, margin, rng), [ann_ids[which]], [categories[which]])
        group = _group_sentence(scene, rng)
        if group is not None:
            text, members = group
            add_ref(image_id, [text], [ann_ids[m] for m in members], sorted({categories[m] for m in members}))
        add_ref(image_id, [_absent_sentence(scene, rng)], [NO_TARGET], [NO_TARGET])
    write_json(folder / "grefs(unc).json", refs)
    categories = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(SHAPES)]
    return writer.write(root, folder / "instances.json", categories)
