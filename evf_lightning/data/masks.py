"""COCO segmentations (polygons, RLE) to binary masks at the image record's size.

reference/datasets.md §2 and §10: the official loaders decode with pycocotools and SUM the parts, so
overlapping polygons leave 2s in a "mask"; we binarise instead. The size comes from the image record
(`height`, `width`), and an RLE that carries another size is an error rather than a silent misfit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as coco_mask


class MaskDecodeError(ValueError):
    """A segmentation that cannot be decoded at its image's size."""


def decode_segmentation(segmentation: Any, height: int, width: int, what: str) -> np.ndarray:
    """Binary uint8 [height, width] mask of a COCO `segmentation`.

    Accepts a list of polygons `[[x1, y1, x2, y2, ...], ...]`, a list of RLE dicts (RefCLEF's form;
    `counts` as str, bytes or an uncompressed list), a single RLE dict, and empty (all zeros). `what`
    names the annotation and image in errors, e.g. "annotation 17 of refcoco/unc/val image 3 (...)".
    """
    if segmentation is None or (isinstance(segmentation, (list, dict)) and len(segmentation) == 0):
        return np.zeros((height, width), dtype=np.uint8)
    if isinstance(segmentation, dict):
        segmentation = [segmentation]
    if not isinstance(segmentation, list):
        raise MaskDecodeError(f"{what}: a segmentation of type {type(segmentation).__name__} is not supported")
    if all(isinstance(part, list) for part in segmentation):
        rles = _polygon_rles(segmentation, height, width, what)
    elif all(isinstance(part, dict) for part in segmentation):
        rles = [_rle(part, height, width, what) for part in segmentation]
    else:
        raise MaskDecodeError(f"{what}: a segmentation must be a list of polygons or a list of RLE dicts")
    if not rles:
        return np.zeros((height, width), dtype=np.uint8)
    decoded = coco_mask.decode(rles)  # [H, W, parts]
    return (decoded.reshape(height, width, -1).sum(axis=2) > 0).astype(np.uint8)


def _polygon_rles(polygons: list[list[Any]], height: int, width: int, what: str) -> list[dict]:
    # pycocotools reads a list whose first entry has exactly 4 numbers as boxes, not polygons; a polygon
    # of fewer than 3 points has no area anyway, so such parts are dropped before it can misread them.
    kept = [[float(v) for v in polygon] for polygon in polygons if len(polygon) >= 6]
    if any(len(polygon) % 2 for polygon in kept):
        raise MaskDecodeError(f"{what}: a polygon has an odd number of coordinates")
    return coco_mask.frPyObjects(kept, height, width) if kept else []


def _rle(rle: dict[str, Any], height: int, width: int, what: str) -> dict[str, Any]:
    if "counts" not in rle or "size" not in rle:
        raise MaskDecodeError(f"{what}: an RLE dict needs 'size' and 'counts', got keys {sorted(rle)}")
    size = [int(v) for v in rle["size"]]
    if size != [height, width]:
        raise MaskDecodeError(
            f"{what}: its RLE is {size[0]}x{size[1]} (h x w) but the image record says {height}x{width}"
        )
    counts = rle["counts"]
    if isinstance(counts, list):  # uncompressed RLE (COCO crowd style)
        return coco_mask.frPyObjects({"size": size, "counts": counts}, height, width)
    return {"size": size, "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
