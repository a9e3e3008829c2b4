"""Reader for Pascal-Part in VLPart's conversion: one semantic mask per part category (datasets.md §9).

`<root>/vlpart/pascal_part/train.json` (COCO json from VLPart's `pascal_part_mat2json.py`: 93 categories named
"object:part", each annotation one compressed RLE dict) with the VOC2010 images in
`<root>/vlpart/pascal_part/VOCdevkit/VOC2010/JPEGImages/`. All instances of a part in an image, across objects,
merge into one mask, prompted `"[semantic] " + name.replace(":", " ")`, e.g. "[semantic] potted plant pot".
Annotations that cannot give a mask are skipped as the official loader does (`skipped_annotations`).
"""

from __future__ import annotations

from pathlib import Path

from evf_lightning.data.coco_json import CocoIndex, CocoPromptReader, semantic_prompts

DATA_DIR = Path("vlpart/pascal_part")
IMAGE_DIR = DATA_DIR / "VOCdevkit/VOC2010/JPEGImages"


def pascal_part_prompt(name: str) -> str:
    return "[semantic] " + name.replace(":", " ")


class PascalPartReader(CocoPromptReader):
    """VLPart's Pascal-Part training json (the only split EVF-SAM reads)."""

    def __init__(self, root: str | Path) -> None:
        root = Path(root)
        index = CocoIndex(root / DATA_DIR / "train.json")
        prompts, self.skipped_annotations = semantic_prompts(index, pascal_part_prompt)
        super().__init__("pascal_part/train", index, root / IMAGE_DIR, prompts)
