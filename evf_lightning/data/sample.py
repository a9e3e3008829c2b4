"""The uniform sample every reader yields, whatever the on-disk format."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ReferringSample:
    """One image and its expressions, each with a binary mask at the image's resolution.

    `source` says where it came from (dataset, split, image id, file) so every error can name it.
    """

    image: np.ndarray
    texts: list[str]
    masks: np.ndarray
    source: str
