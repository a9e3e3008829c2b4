"""Reader for the refer format: RefCOCO, RefCOCO+, RefCOCOg and RefCLEF (reference/datasets.md §2, §4).

`<root>/refer_seg/<dataset>/instances.json` (COCO style) plus `refs(<split_by>).p` (a Python-2 pickle of
ref dicts, read without running code). One item is one image with at least one ref in the split, in
ascending image id; its expressions are every sentence of every ref of that image, refs in pickle order
and sentences in stored order, which is how the official evaluation reads them.
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

# The split_by names each dataset is released with; the first is the one the official training reads.
SPLIT_BYS: dict[str, tuple[str, ...]] = {
    "refcoco": ("unc", "google"),
    "refcoco+": ("unc",),
    "refcocog": ("umd", "google"),
    "refclef": ("unc", "berkeley"),
}
SPLITS = ("train", "val", "test", "testA", "testB", "testC")
COCO_IMAGES = Path("refer_seg/images/mscoco/images/train2014")
CLEF_IMAGES = Path("refer_seg/images/saiapr_tc-12")
_REF_KEYS = frozenset({"ref_id", "ann_id", "image_id", "split", "sentences"})


def image_folder(dataset: str) -> Path:
    """Image folder relative to the root: the COCO train2014 folder, or saiapr_tc-12 for RefCLEF."""
    return CLEF_IMAGES if dataset == "refclef" else COCO_IMAGES


def split_matches(requested: str, stored: str) -> bool:
    """REFER.getRefIds: train/val exactly, testA/testB/testC by their letter, test by substring."""
    if requested in ("testA", "testB", "testC"):
        return requested[-1] in stored
    if requested == "test":
        return "test" in stored
    return stored == requested


def check_names(dataset: str, split_by: str, split: str) -> None:
    """ValueError naming the unknown value and the allowed ones (the official REFER calls sys.exit)."""
    if dataset not in SPLIT_BYS:
        raise ValueError(f"unknown refer dataset {dataset!r}; expected one of {list(SPLIT_BYS)}")
    if split_by not in SPLIT_BYS[dataset]:
        raise ValueError(f"{dataset} has no split_by {split_by!r}; expected one of {list(SPLIT_BYS[dataset])}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")


@dataclass(frozen=True)
class Expression:
    """One (sentence, annotation) pair of a ref."""

    text: str
    ann_id: int
    ref_id: int


def expression_indices(count: int, expressions: Sequence[int] | None, source: str) -> list[int]:
    """The indices of the expressions a reader is asked for (all, in order, by default), each checked against
    the `count` that `source` has, so a bad request names the sample instead of failing deep in a list."""
    if expressions is None:
        return list(range(count))
    bad = [i for i in expressions if not -count <= i < count]
    if bad:
        raise IndexError(f"{source} has {count} expressions; asked for {bad}")
    return list(expressions)


def read_rgb(path: Path, source: str) -> np.ndarray:
    """[H, W, 3] uint8 RGB from any file PIL reads (grey, palette, RGBA and CMYK are converted)."""
    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))
    except FileNotFoundError as error:
        raise FileNotFoundError(f"image file {path} of {source} does not exist") from error
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise OSError(f"image file {path} of {source} cannot be read: {error}") from error


class ReferDataset:
    """One split of one refer dataset, indexable by image."""

    def __init__(self, root: str | Path, dataset: str, split_by: str, split: str) -> None:
        check_names(dataset, split_by, split)
        self.root = Path(root)
        self.dataset = dataset
        self.name = f"{dataset}/{split_by}/{split}"
        folder = self.root / "refer_seg" / dataset
        instances_path = folder / "instances.json"
        refs_path = folder / f"refs({split_by}).p"
        for path in (instances_path, refs_path):
            if not path.is_file():
                raise FileNotFoundError(f"annotation file {path} of {self.name} does not exist")
        refs = load_refs_pickle(refs_path)
        for position, ref in enumerate(refs):
            missing = _REF_KEYS - set(ref) if isinstance(ref, dict) else _REF_KEYS
            if missing:
                raise ValueError(f"{refs_path}: entry {position} is not a ref; it lacks {sorted(missing)}")
        chosen = [ref for ref in refs if split_matches(split, ref["split"])]
        if not chosen:
            stored = sorted({str(ref["split"]) for ref in refs})
            raise ValueError(f"{refs_path} has no ref in split {split!r}; its refs are in {stored}")
        with instances_path.open("rb") as file:
            instances = json.load(file)
        annotations = {ann["id"]: ann for ann in instances["annotations"]}
        images = {record["id"]: record for record in instances["images"]}
        self._expressions: dict[int, list[Expression]] = {}
        self._annotations: dict[int, dict[str, Any]] = {}
        for ref in chosen:
            ann_id, image_id = ref["ann_id"], ref["image_id"]
            for kind, key, table in (("annotation", ann_id, annotations), ("image", image_id, images)):
                if key not in table:
                    raise ValueError(
                        f"{refs_path}: ref {ref['ref_id']} names {kind} {key}, absent from {instances_path}"
                    )
            self._annotations[ann_id] = annotations[ann_id]  # only what this split needs stays in memory
            pairs = [Expression(sentence["sent"], ann_id, ref["ref_id"]) for sentence in ref["sentences"]]
            self._expressions.setdefault(image_id, []).extend(pairs)
        self._image_ids = tuple(sorted(self._expressions))
        self._images = {image_id: images[image_id] for image_id in self._image_ids}

    def __len__(self) -> int:
        return len(self._image_ids)

    @property
    def image_ids(self) -> tuple[int, ...]:
        """The image id of each index, ascending."""
        return self._image_ids

    def image_path(self, index: int) -> Path:
        return self.root / image_folder(self.dataset) / self._images[self._image_ids[index]]["file_name"]

    def expressions(self, index: int) -> list[Expression]:
        """Every (sentence, annotation) pair of the image: refs in pickle order, sentences in stored order."""
        return list(self._expressions[self._image_ids[index]])

    def num_expressions(self, index: int) -> int:
        return len(self._expressions[self._image_ids[index]])

    def texts(self, index: int, normalise_text: bool = False) -> list[str]:
        return [expression_text(e.text, normalise_text) for e in self._expressions[self._image_ids[index]]]

    def load(
        self, index: int, expressions: Sequence[int] | None = None, normalise_text: bool = False
    ) -> ReferringSample:
        """The image, the chosen expressions (all by default) and one binary mask each.

        `normalise_text` strips and lower-cases as the official evaluation does; training reads `sent`
        verbatim, as the official training does.
        """
        image_id = self._image_ids[index]
        record = self._images[image_id]
        path = self.image_path(index)
        source = f"{self.name} image {image_id} ({path})"
        pairs = self._expressions[image_id]
        pairs = [pairs[i] for i in expression_indices(len(pairs), expressions, source)]
        image = read_rgb(path, source)
        height, width = int(record["height"]), int(record["width"])
        if image.shape[:2] != (height, width):
            raise ValueError(
                f"{source}: the file is {image.shape[0]}x{image.shape[1]} (h x w) but instances.json says "
                f"{height}x{width}, so the masks of annotations {sorted({e.ann_id for e in pairs})} would not "
                "fit the image"
            )
        decoded: dict[int, np.ndarray] = {}
        for pair in pairs:
            if pair.ann_id not in decoded:
                what = f"annotation {pair.ann_id} of {source}"
                decoded[pair.ann_id] = decode_segmentation(
                    self._annotations[pair.ann_id].get("segmentation"), height, width, what
                )
        masks = (
            np.stack([decoded[pair.ann_id] for pair in pairs])
            if pairs
            else np.zeros((0, height, width), dtype=np.uint8)
        )
        texts = [expression_text(pair.text, normalise_text) for pair in pairs]
        return ReferringSample(image=image, texts=texts, masks=masks, source=source)


def expression_text(text: str, normalise: bool) -> str:
    return text.strip().lower() if normalise else text
