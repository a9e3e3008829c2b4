"""The uniform sample every reader yields, whatever the on-disk format (design.md, `data/`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ReferringSample:
    """One image and its expressions, each with a binary mask at the image's own resolution.

    image: [H, W, 3] uint8 RGB. texts: one per expression. masks: [len(texts), H, W] uint8 in {0, 1}.
    source: where it came from (dataset, split, image id, file), so every later error can name it.
    """

    image: np.ndarray
    texts: list[str]
    masks: np.ndarray
    source: str
