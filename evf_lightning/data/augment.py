"""Training augmentation of a ReferringSample: image and every mask move together, texts follow a flip.

Off by default: the official EVF-SAM training reads images as they are (datasets.md §10), and a flip alone would
turn "the left man" into a wrong label. Where a horizontal flip happens, "left" and "right" (and "leftmost",
"right-hand", "lefthand"...) swap in every text, whole words only, case kept; "leftover" or "bright" stay.
Colour jitter has no hue on purpose: expressions name colours. Scale and border crops can move an object out of
the picture (its mask then empties) and can change which object is "leftmost"; use them knowing that.

Randomness comes only from the numpy Generator passed to `apply`, so ExpressionDataset's per-draw generator
(seed, epoch, index) makes every augmented draw reproducible. albumentations is imported on first use, with its
online version check switched off (nothing may reach the network at run time).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from evf_lightning.data.sample import ReferringSample

# "left"/"right", alone or as the stem of these forms; \b keeps "leftover", "bright", "copyright" whole.
_SIDE_WORD = re.compile(r"\b(left|right)(most|hand|handed|ward|wards)?\b", re.IGNORECASE)
_OTHER_SIDE = {"left": "right", "right": "left"}


def swap_left_right(text: str) -> str:
    """`text` with left and right exchanged, whole words only, in the case each was written in."""

    def other(match: re.Match[str]) -> str:
        side = match.group(1)
        swapped = _OTHER_SIDE[side.lower()]
        if side.isupper():
            swapped = swapped.upper()
        elif side[0].isupper():
            swapped = swapped.capitalize()
        return swapped + (match.group(2) or "")

    return _SIDE_WORD.sub(other, text)


@dataclass(frozen=True)
class AugmentConfig:
    """What to vary and how much; every field at its default means "no augmentation".

    hflip_probability: chance of a horizontal flip (texts swap left and right with it).
    scale: range of a zoom about the centre that keeps the canvas size (below 1 pads with black, above 1 cuts
        the borders off), e.g. (0.8, 1.2).
    crop_border: up to this fraction of the width and height cut off each side, e.g. 0.1.
    brightness, contrast, saturation: factors drawn in [1 - x, 1 + x], e.g. 0.2. No hue: texts name colours.
    """

    hflip_probability: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    crop_border: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", tuple(float(v) for v in self.scale))  # a YAML list compares as a tuple
        if not 0.0 <= self.hflip_probability <= 1.0:
            raise ValueError(f"hflip_probability must be in [0, 1], got {self.hflip_probability}")
        if len(self.scale) != 2 or not 0.0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high, got {self.scale}")
        if not 0.0 <= self.crop_border < 0.5:
            raise ValueError(f"crop_border must be in [0, 0.5), got {self.crop_border}")
        for name in ("brightness", "contrast", "saturation"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")

    @classmethod
    def paper(cls) -> AugmentConfig:
        """No augmentation, as the official training."""
        return cls()

    @classmethod
    def light(cls) -> AugmentConfig:
        """Flips half the time, mild zoom, border crops and colour jitter."""
        return cls(
            hflip_probability=0.5, scale=(0.9, 1.1), crop_border=0.05, brightness=0.2, contrast=0.2, saturation=0.2
        )

    @property
    def enabled(self) -> bool:
        return self != AugmentConfig()


class Augmenter:
    """`apply(sample, rng)`: the augmented sample, drawn from `rng` alone. With the default config it returns
    `sample` itself and draws nothing from `rng`."""

    def __init__(self, config: AugmentConfig | None = None) -> None:
        self.config = config or AugmentConfig()
        self._pipeline = _albumentations_pipeline(self.config)

    def apply(self, sample: ReferringSample, rng: np.random.Generator) -> ReferringSample:
        if not self.config.enabled:
            return sample
        image, masks, texts = sample.image, sample.masks, sample.texts
        if self.config.hflip_probability > 0.0 and rng.random() < self.config.hflip_probability:
            image, masks = image[:, ::-1], masks[:, :, ::-1]
            texts = [swap_left_right(text) for text in texts]
        if self._pipeline is not None:
            self._pipeline.set_random_seed(int(rng.integers(2**32)))
            if len(masks):
                out = self._pipeline(image=np.ascontiguousarray(image), masks=np.ascontiguousarray(masks))
                image, masks = out["image"], out["masks"]
            else:  # albumentations cannot stack an empty mask list
                image = self._pipeline(image=np.ascontiguousarray(image))["image"]
                masks = np.zeros((0, *image.shape[:2]), dtype=np.uint8)
        return ReferringSample(
            image=np.ascontiguousarray(image), texts=texts, masks=np.ascontiguousarray(masks), source=sample.source
        )

    __call__ = apply


def _albumentations_pipeline(config: AugmentConfig) -> Any:
    """An albumentations Compose of everything but the flip; None when none of it is on (no import then)."""
    zoom, crop = config.scale != (1.0, 1.0), config.crop_border > 0.0
    jitter = bool(config.brightness or config.contrast or config.saturation)
    if not (zoom or crop or jitter):
        return None
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # its import otherwise asks PyPI for a newer version
    import albumentations as A
    import cv2

    steps: list[Any] = []
    if zoom:
        steps.append(A.Affine(scale=config.scale, keep_ratio=True, mask_interpolation=cv2.INTER_NEAREST, p=1.0))
    if crop:
        border = config.crop_border
        steps.append(A.RandomCropFromBorders(crop_left=border, crop_right=border, crop_top=border, crop_bottom=border))
    if jitter:
        steps.append(A.ColorJitter(config.brightness, config.contrast, config.saturation, hue=0.0, p=1.0))
    return A.Compose(steps)
