"""Reader for the refer format: RefCOCO, RefCOCO+, RefCOCOg and RefCLEF (reference/datasets.md §2, §4).

`<root>/refer_seg/<dataset>/instances.json` (COCO style) + `refs(<split_by>).p` (a Python-2 pickle of
ref dicts). One item is one image with at least one ref in the split; its expressions are every
sentence of every ref of that image, refs in pickle order and sentences in stored order, as the
official evaluation reads them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from evf_lightning.data.masks import decode_segmentation
from evf_lightning.data.safe_pickle import load_refs_pickle
from evf_lightning.data.sample import ReferringSample

SPLIT_BYS = {
    "refcoco": ("unc", "google"),
    "refcoco+": ("unc",),
    "refcocog": ("umd", "google"),
    "refclef": ("unc", "berkeley"),
}
SPLITS = ("train", "val", "test", "testA", "testB", "testC")
COCO_IMAGES = Path("refer_seg/images/mscoco/images/train2014")
CLEF_IMAGES = Path("refer_seg/images/saiapr_tc-12")


def image_folder(dataset: str) -> Path:
    return CLEF_IMAGES if dataset == "refclef" else COCO_IMAGES


def split_matches(requested: str, stored: str) -> bool:
    """REFER.getRefIds: train/val exactly, testA/B/C by their letter, test by substring."""
    if requested in ("testA", "testB", "testC"):
        return requested[-1] in stored
    if requested == "test":
        return "test" in stored
    return stored == requested


@dataclass(frozen=True)
class Expression:
    text: str
    ann_id: int


def read_image(path: Path, source: str) -> np.ndarray:
    """RGB uint8 [H, W, 3] from any PIL-readable file (grey, palette, RGBA converted)."""
    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))
    except FileNotFoundError as error:
        raise FileNotFoundError(f"image {path} of {source} does not exist") from error
    except (UnidentifiedImageError, OSError) as error:
        raise OSError(f"image {path} of {source} cannot be read ({error})") from error


class ReferDataset:
    def __init__(self, root: str | Path, dataset: str, split_by: str, split: str) -> None:
        if dataset not in SPLIT_BYS:
            raise ValueError(f"unknown refer dataset {dataset!r}; expected one of {sorted(SPLIT_BYS)}")
        if split_by not in SPLIT_BYS[dataset]:
            raise ValueError(f"{dataset} has no split_by {split_by!r}; expected one of {SPLIT_BYS[dataset]}")
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        self.root = Path(root)
        self.name = f"{dataset}/{split_by}/{split}"
        self.dataset = dataset
        folder = self.root / "refer_seg" / dataset
        instances_path = folder / "instances.json"
        refs_path = folder / f"refs({split_by}).p"
        for path in (instances_path, refs_path):
            if not path.is_file():
                raise FileNotFoundError(f"annotation file {path} for {self.name} does not exist")
        instances = json.loads(instances_path.read_text())
        self.images = {record["id"]: record for record in instances["images"]}
        self.annotations = {ann["id"]: ann for ann in instances["annotations"]}
        self.expressions: dict[int, list[Expression]] = {}
        for ref in load_refs_pickle(refs_path):
            if not split_matches(split, ref["split"]):
                continue
            if ref["ann_id"] not in self.annotations:
                raise ValueError(
                    f"{refs_path}: ref {ref['ref_id']} names annotation {ref['ann_id']}, absent from {instances_path}"
                )
            sentences = [Expression(s["sent"], ref["ann_id"]) for s in ref["sentences"]]
            self.expressions.setdefault(ref["image_id"], []).extend(sentences)
        self.image_ids = sorted(self.expressions)

    def __len__(self) -> int:
        return len(self.image_ids)

    def num_expressions(self, index: int) -> int:
        return len(self.expressions[self.image_ids[index]])

    def texts(self, index: int, normalise_text: bool = False) -> list[str]:
        texts = [e.text for e in self.expressions[self.image_ids[index]]]
        return [t.strip().lower() for t in texts] if normalise_text else texts

    def load(
        self, index: int, expressions: Sequence[int] | None = None, normalise_text: bool = False
    ) -> ReferringSample:
        """The image, the chosen expressions (all by default) and their masks at the image's size.

        `normalise_text` lower-cases and strips as the official evaluation; training uses `sent` as is.
        """
        image_id = self.image_ids[index]
        record: dict[str, Any] = self.images[image_id]
        path = self.root / image_folder(self.dataset) / record["file_name"]
        source = f"{self.name} image {image_id} ({path})"
        image = read_image(path, source)
        height, width = record["height"], record["width"]
        if image.shape[:2] != (height, width):
            raise ValueError(
                f"{source}: file is {image.shape[1]}x{image.shape[0]} but instances.json says {width}x{height}"
            )
        chosen = self.expressions[image_id]
        if expressions is not None:
            chosen = [chosen[i] for i in expressions]
        masks = np.stack(
            [
                decode_segmentation(
                    self.annotations[e.ann_id].get("segmentation"),
                    height,
                    width,
                    f"annotation {e.ann_id} of {source}",
                )
                for e in chosen
            ]
        )
        texts = [e.text for e in chosen]
        if normalise_text:
            texts = [t.strip().lower() for t in texts]
        return ReferringSample(image=image, texts=texts, masks=masks, source=source)
