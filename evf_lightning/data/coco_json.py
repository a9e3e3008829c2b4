"""What the COCO-json readers share: Objects365, PartImageNet, Pascal-Part and gRefCOCO (datasets.md §3, §6, §7, §9).

`CocoIndex` reads one COCO json (`images`, `annotations`, `categories`) and checks what can be checked before
training: every annotation has a segmentation, names a listed category and a listed image, and carries RLE of
its image's size. `CocoPromptReader` is the reader all four are: one item per image with at least one prompt,
in ascending image id; a prompt is a text and the annotations whose masks are OR-ed into its mask (none for a
gRefCOCO no-target expression, whose mask is all zeros). The official loaders SUM merged masks; we binarise.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evf_lightning.data.masks import decode_segmentation
from evf_lightning.data.refer import expression_indices, expression_text, read_rgb
from evf_lightning.data.sample import ReferringSample

_FIELDS = {
    "images": ("id", "file_name", "height", "width"),
    "categories": ("id", "name"),
    "annotations": ("id", "image_id", "category_id"),
}


class CocoIndex:
    """One COCO json, validated: images and annotations by id, category names by id, annotations per image
    in file order (the order pycocotools' `getAnnIds` gives)."""

    def __init__(self, path: str | Path, annotation_fields: tuple[str, ...] = ("segmentation",)) -> None:
        """`annotation_fields`: what every annotation needs besides its ids (boxes-only files say ("bbox",))."""
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"annotation file {self.path} does not exist")
        try:
            with self.path.open("rb") as file:
                data = json.load(file)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{self.path} is not a readable json file ({error})") from error
        if not isinstance(data, dict):
            raise ValueError(f"{self.path} holds a {type(data).__name__}; a COCO json holds an object")
        required = _FIELDS | {"annotations": _FIELDS["annotations"] + annotation_fields}
        for key, fields in required.items():
            if not isinstance(data.get(key), list):
                raise ValueError(f"{self.path} has no {key!r} list; a COCO json needs images, annotations, categories")
            for position, entry in enumerate(data[key]):
                missing = [f for f in fields if f not in entry] if isinstance(entry, dict) else list(fields)
                if missing:
                    known = isinstance(entry, dict) and "id" in entry
                    name = f"{key} entry {position}" + (f" (id {entry['id']})" if known else "")
                    raise ValueError(f"{self.path}: {name} has no {', '.join(map(repr, missing))} field")
        self.images: dict[int, dict[str, Any]] = {record["id"]: record for record in data["images"]}
        self.categories: dict[int, str] = {category["id"]: category["name"] for category in data["categories"]}
        self.annotations: dict[int, dict[str, Any]] = {}
        self.image_annotations: dict[int, list[dict[str, Any]]] = {}
        for ann in data["annotations"]:
            what = f"{self.path}: annotation {ann['id']}"
            if ann["category_id"] not in self.categories:
                raise ValueError(f"{what} has category_id {ann['category_id']!r}, absent from its categories list")
            if ann["image_id"] not in self.images:
                raise ValueError(f"{what} has image_id {ann['image_id']!r}, absent from its images list")
            record = self.images[ann["image_id"]]
            if "segmentation" in ann:
                _check_rle_size(ann["segmentation"], int(record["height"]), int(record["width"]), what)
            self.annotations[ann["id"]] = ann
            self.image_annotations.setdefault(ann["image_id"], []).append(ann)


def _check_rle_size(segmentation: Any, height: int, width: int, what: str) -> None:
    """A ValueError where an RLE of the segmentation is not of its image record's size (checkable without decoding)."""
    parts = [segmentation] if isinstance(segmentation, dict) else segmentation
    for part in parts if isinstance(parts, list) else ():
        size = [int(v) for v in part["size"]] if isinstance(part, dict) and "size" in part else [height, width]
        if size != [height, width]:
            raise ValueError(
                f"{what} has an RLE of {size[0]}x{size[1]} (h x w) but its image record says {height}x{width}"
            )


def has_area(segmentation: Any) -> bool:
    """Whether a segmentation can give a mask: not empty, and not only polygons of fewer than 3 points.

    pycocotools' `annToMask` raises on these; the official part loaders skip the annotation then.
    """
    if not segmentation:
        return False
    if isinstance(segmentation, list) and all(isinstance(part, list) for part in segmentation):
        return any(len(part) >= 6 for part in segmentation)
    return True


@dataclass(frozen=True)
class Prompt:
    """One text and the annotations whose masks make its mask (OR-ed; none gives an all-zero mask)."""

    text: str
    ann_ids: tuple[int, ...]


class CocoPromptReader:
    """Images of one COCO json with their prompts; the `SampleReader` every COCO-family reader is.

    `name` names the dataset and split in every `source` and error, `image_dir` holds the `file_name`s.
    """

    def __init__(self, name: str, index: CocoIndex, image_dir: Path, prompts: dict[int, list[Prompt]]) -> None:
        self.name = name
        self.json_path = index.path
        self.image_dir = image_dir
        self._prompts = {image_id: list(found) for image_id, found in prompts.items() if found}
        self._image_ids = tuple(sorted(self._prompts))
        self._images = {image_id: index.images[image_id] for image_id in self._image_ids}
        # only the annotations the prompts use stay in memory
        self._annotations = {
            ann_id: index.annotations[ann_id]
            for found in self._prompts.values()
            for prompt in found
            for ann_id in prompt.ann_ids
        }

    def __len__(self) -> int:
        return len(self._image_ids)

    @property
    def image_ids(self) -> tuple[int, ...]:
        """The image id of each index, ascending."""
        return self._image_ids

    def image_path(self, index: int) -> Path:
        return self.image_dir / self._images[self._image_ids[index]]["file_name"]

    def prompts(self, index: int) -> list[Prompt]:
        return list(self._prompts[self._image_ids[index]])

    def num_expressions(self, index: int) -> int:
        return len(self._prompts[self._image_ids[index]])

    def texts(self, index: int, normalise_text: bool = False) -> list[str]:
        return [expression_text(p.text, normalise_text) for p in self._prompts[self._image_ids[index]]]

    def load(
        self, index: int, expressions: Sequence[int] | None = None, normalise_text: bool = False
    ) -> ReferringSample:
        """The image, the chosen prompts (all by default) and one binary mask each, at the image's size.

        `normalise_text` strips and lower-cases, as evaluation does for RefCOCO; training reads texts verbatim.
        """
        image_id = self._image_ids[index]
        record = self._images[image_id]
        path = self.image_path(index)
        source = f"{self.name} image {image_id} ({path})"
        prompts = self._prompts[image_id]
        chosen = [prompts[i] for i in expression_indices(len(prompts), expressions, source)]
        image = read_rgb(path, source)
        height, width = int(record["height"]), int(record["width"])
        if image.shape[:2] != (height, width):
            raise ValueError(
                f"{source}: the file is {image.shape[0]}x{image.shape[1]} (h x w) but {self.json_path} says "
                f"{height}x{width}, so its masks would not fit the image"
            )
        decoded: dict[int, np.ndarray] = {}
        masks = np.zeros((len(chosen), height, width), dtype=np.uint8)
        for row, prompt in enumerate(chosen):
            for ann_id in prompt.ann_ids:
                if ann_id not in decoded:
                    what = f"annotation {ann_id} in {self.json_path} of {source}"
                    segmentation = self._annotations[ann_id]["segmentation"]
                    decoded[ann_id] = decode_segmentation(segmentation, height, width, what)
                masks[row] |= decoded[ann_id]
        texts = [expression_text(prompt.text, normalise_text) for prompt in chosen]
        return ReferringSample(image=image, texts=texts, masks=masks, source=source)


def semantic_prompts(index: CocoIndex, text: Callable[[str], str]) -> tuple[dict[int, list[Prompt]], int]:
    """Part datasets (PartImageNet, Pascal-Part): per image, one prompt per category name, made of all its
    annotations that can give a mask, named by `text(category name)`; prompts in order of first appearance,
    as the official loaders' dict keeps them. Also returns how many annotations were skipped for no area."""
    prompts: dict[int, list[Prompt]] = {}
    skipped = 0
    for image_id, anns in index.image_annotations.items():
        merged: dict[str, list[int]] = {}
        for ann in anns:
            if not has_area(ann["segmentation"]):
                skipped += 1
                continue
            merged.setdefault(index.categories[ann["category_id"]], []).append(ann["id"])
        prompts[image_id] = [Prompt(text(name), tuple(ids)) for name, ids in merged.items()]
    return prompts, skipped
