"""COCO segmentations (polygons, RLE) to binary masks."""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as coco_mask


class MaskDecodeError(ValueError):
    """A segmentation that cannot be decoded at the image's size."""


def decode_segmentation(segmentation: Any, height: int, width: int, what: str) -> np.ndarray:
    """Binary uint8 [H, W] mask of a COCO `segmentation`; `what` names it in errors.

    Polygon lists, lists of compressed RLE dicts (RefCLEF), a single RLE dict, and empty (an all-zero
    mask) are accepted. Parts are OR-ed: the official loaders sum them and leave 2 where polygons
    overlap, which is not a mask.
    """
    if segmentation is None or (isinstance(segmentation, list) and len(segmentation) == 0):
        return np.zeros((height, width), dtype=np.uint8)
    if isinstance(segmentation, dict):
        segmentation = [segmentation]
    if not isinstance(segmentation, list):
        raise MaskDecodeError(f"{what}: segmentation of type {type(segmentation).__name__} is not supported")
    if isinstance(segmentation[0], list):
        rles = coco_mask.frPyObjects(segmentation, height, width)
    else:
        rles = []
        for rle in segmentation:
            size = list(rle.get("size", []))
            if size != [height, width]:
                raise MaskDecodeError(f"{what}: RLE size {size} does not match the image's {[height, width]}")
            counts = rle["counts"]
            rles.append({"size": size, "counts": counts.encode() if isinstance(counts, str) else counts})
    decoded = coco_mask.decode(rles)
    return (decoded.reshape(height, width, -1).max(axis=2) > 0).astype(np.uint8)
