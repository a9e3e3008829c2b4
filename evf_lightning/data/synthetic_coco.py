"""What the COCO-json synthetic writers share (Objects365, PartImageNet, Pascal-Part, gRefCOCO).

Scenes come from the refer generator (evf_lightning/data/synthetic.py): 3-4 coloured shapes, an annotation per
shape holding its visible part, painted into a JPEG from the same points. The part and category datasets give
each appearance (shape and colour) its own category, so a category always looks the same and a model can learn
it; the writers differ only in names, file layout and segmentation form (polygons, a list of RLE, or one RLE).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from evf_lightning.data.synthetic import COLOURS, SHAPES, SynthObject, annotation, layout, render, segments

# Segmentation forms: COCO polygons, a list holding one compressed RLE (RefCLEF, Objects365), one RLE dict (VLPart).
SegmentationForm = Literal["polygons", "rle_list", "rle"]
APPEARANCES = len(SHAPES) * len(COLOURS)


@dataclass(frozen=True)
class Scene:
    """One generated image: its size, its shapes, each shape's visible part as polygons, and the JPEG bytes."""

    height: int
    width: int
    objects: tuple[SynthObject, ...]
    polygons: tuple[list[list[float]], ...]
    jpeg: bytes


def make_scene(rng: np.random.Generator, image_size: tuple[int, int]) -> Scene:
    """A scene whose (height, width) varies around `image_size` by up to 15%."""
    height, width = (round(side * float(rng.uniform(0.85, 1.15))) for side in image_size)
    objects = layout(rng, height, width, min(image_size) / 96.0)
    jpeg = render(objects, height, width, rng)
    return Scene(height, width, tuple(objects), tuple(segments(objects)), jpeg)


def appearance(obj: SynthObject) -> int:
    """0..APPEARANCES-1: the object's (shape, colour), the key the category writers map to a category."""
    return SHAPES.index(obj.shape) * len(COLOURS) + list(COLOURS).index(obj.colour)


def write_json(path: Path, content: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))


@dataclass(frozen=True)
class SynthCocoSummary:
    """What a COCO-family writer wrote. Per image id, in the order the reader gives them: the prompts, and
    for each the annotation ids its mask is the OR of (empty for a no-target expression)."""

    root: Path
    annotation_file: Path
    prompts: dict[int, tuple[str, ...]]
    targets: dict[int, tuple[tuple[int, ...], ...]]
    annotations: int

    @property
    def images(self) -> int:
        return len(self.prompts)

    @property
    def expressions(self) -> int:
        return sum(len(texts) for texts in self.prompts.values())


@dataclass
class CocoWriter:
    """Collects one COCO json's images and annotations, writes the JPEGs, and records the prompts."""

    first_ann_id: int = 1
    images: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    prompts: dict[int, list[str]] = field(default_factory=dict)
    targets: dict[int, list[tuple[int, ...]]] = field(default_factory=dict)

    def add_image(self, image_id: int, file_name: str, image_dir: Path, scene: Scene) -> None:
        path = image_dir / file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(scene.jpeg)
        self.images.append({"id": image_id, "file_name": file_name, "height": scene.height, "width": scene.width})

    def add_annotation(self, image_id: int, category_id: int, fields: dict[str, Any]) -> int:
        """Append an annotation with the next id and these fields (segmentation, bbox, ...); returns its id."""
        ann_id = self.first_ann_id + len(self.annotations)
        self.annotations.append({"id": ann_id, "image_id": image_id, "category_id": category_id} | fields)
        return ann_id

    def add_shape(self, image_id: int, category_id: int, scene: Scene, which: int, form: SegmentationForm) -> int:
        """Annotate `scene.objects[which]` (its visible part) with a segmentation in `form`; returns the id."""
        polygons = scene.polygons[which]
        fields = annotation("refcoco" if form == "polygons" else "refclef", polygons, scene.height, scene.width)
        if form == "rle":
            fields["segmentation"] = fields["segmentation"][0]
        return self.add_annotation(image_id, category_id, fields)

    def add_prompt(self, image_id: int, text: str, ann_ids: Sequence[int]) -> None:
        self.prompts.setdefault(image_id, []).append(text)
        self.targets.setdefault(image_id, []).append(tuple(ann_ids))

    def add_parts(
        self,
        image_id: int,
        scene: Scene,
        categories: Sequence[int],
        names: Mapping[int, str],
        prompt: Callable[[str], str],
        form: SegmentationForm,
    ) -> None:
        """Part datasets: one annotation per shape, category `categories[appearance]`, and one prompt per
        category with its instances merged, in order of first appearance."""
        merged: dict[int, list[int]] = {}
        for which, obj in enumerate(scene.objects):
            category = categories[appearance(obj)]
            merged.setdefault(category, []).append(self.add_shape(image_id, category, scene, which, form))
        for category, ann_ids in merged.items():
            self.add_prompt(image_id, prompt(names[category]), ann_ids)

    def write(self, root: Path, path: Path, categories: list[dict[str, Any]]) -> SynthCocoSummary:
        """Write the json at `path` and summarise what was written under `root`."""
        write_json(path, {"images": self.images, "annotations": self.annotations, "categories": categories})
        return SynthCocoSummary(
            root=root,
            annotation_file=path,
            prompts={image_id: tuple(texts) for image_id, texts in self.prompts.items()},
            targets={image_id: tuple(found) for image_id, found in self.targets.items()},
            annotations=len(self.annotations),
        )
