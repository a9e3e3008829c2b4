"""Reader for PartImageNet: one semantic mask per part category of an image (datasets.md §7).

`<root>/PartImageNet/annotations/<split>/<split>.json` (COCO json, polygon segmentations, 40 categories named
"Supercategory Part") with the images in `<root>/PartImageNet/images/<split>/`. The instances of a part in an
image are merged into one mask, prompted `"[semantic] " + name.lower()`, e.g. "[semantic] quadruped foot".
Some released annotations have an empty segmentation; the official loader skips them, and so do we
(`skipped_annotations` counts them). The official training reads only `train`.
"""

from __future__ import annotations

from pathlib import Path

from evf_lightning.data.coco_json import CocoIndex, CocoPromptReader, semantic_prompts

SPLITS = ("train", "val", "test")


def part_imagenet_prompt(name: str) -> str:
    return "[semantic] " + name.lower()


class PartImageNetReader(CocoPromptReader):
    """One split of PartImageNet (the Seg or the OOD release: same layout)."""

    def __init__(self, root: str | Path, split: str = "train") -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown PartImageNet split {split!r}; expected one of {list(SPLITS)}")
        folder = Path(root) / "PartImageNet"
        index = CocoIndex(folder / "annotations" / split / f"{split}.json")
        prompts, self.skipped_annotations = semantic_prompts(index, part_imagenet_prompt)
        super().__init__(f"partimagenet/{split}", index, folder / "images" / split, prompts)
