"""Reader for EVF-SAM's Objects365 v1 referring data: category names as prompts, SAM-2 masks (datasets.md §6).

`<root>/Object365/raw/Objects365_v1/2019-08-02/o365_res_instances.json` (COCO json, each annotation's
`segmentation` a list holding one compressed RLE) with the images in the sibling `train/` folder. The prompt
is the category name verbatim, quirks included ("CD", "tissue "), with no "[semantic]" prefix: a bare name is an
instance-level prompt. A bare name only picks out one object where its category occurs once in the image, so
only those categories are kept; on the authors' json, built that way, this filter changes nothing.

The authors' json is not public; `evf data objects365-masks` builds one from the v1 boxes with our SAM-2.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evf_lightning.data.coco_json import CocoIndex, CocoPromptReader, Prompt, has_area

DATA_DIR = Path("Object365/raw/Objects365_v1/2019-08-02")
ANNOTATION_FILE = "o365_res_instances.json"


def once_per_image(annotations: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The annotations of one image whose category occurs exactly once in it, in their order."""
    counts = Counter(ann["category_id"] for ann in annotations)
    return [ann for ann in annotations if counts[ann["category_id"]] == 1]


class Objects365Reader(CocoPromptReader):
    """The training images of `o365_res_instances.json` that keep at least one category."""

    def __init__(self, root: str | Path) -> None:
        folder = Path(root) / DATA_DIR
        index = CocoIndex(folder / ANNOTATION_FILE)
        prompts: dict[int, list[Prompt]] = {}
        for image_id, anns in index.image_annotations.items():
            kept = once_per_image(anns)
            for ann in kept:
                if not has_area(ann["segmentation"]):  # the official loader crashes on it
                    raise ValueError(
                        f"{index.path}: annotation {ann['id']} has an empty segmentation; every annotation of "
                        f"{ANNOTATION_FILE} must carry the mask SAM-2 made from its box"
                    )
            prompts[image_id] = [Prompt(index.categories[ann["category_id"]], (ann["id"],)) for ann in kept]
        self.dropped_annotations = len(index.annotations) - sum(len(found) for found in prompts.values())
        super().__init__("objects365/train", index, folder / "train", prompts)
