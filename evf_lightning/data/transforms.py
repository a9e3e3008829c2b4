"""Per-backbone preprocessing exactly as the official code, and its inverse for mask logits.

reference/evf-sam-recipe.md §2: the SAM branch resizes with PIL bilinear on uint8 (`int(x * s + 0.5)`
rounding) and normalises on 0..255; the BEiT-3 branch resizes the 0..1 tensor to a square with bicubic
interpolation and no antialiasing. albumentations' resize goes through OpenCV, whose bilinear filter
differs from PIL's (PIL antialiases when downscaling), so it would not reproduce the released models'
inputs; these two functions stay on PIL and torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

SamResize = Literal["longest_pad", "stretch", "longest_then_stretch"]
SAM_MEAN = (123.675, 116.28, 103.53)
SAM_STD = (58.395, 57.12, 57.375)


def longest_side_size(height: int, width: int, target: int) -> tuple[int, int]:
    """(h', w') with the longest side at `target`, rounded as segment-anything's ResizeLongestSide."""
    scale = target / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def _pil_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.array(Image.fromarray(image).resize((width, height), Image.BILINEAR))


@dataclass(frozen=True)
class SamPreprocess:
    """uint8 RGB [H, W, 3] -> normalised float [3, size, size] and the resized (h', w').

    - `longest_pad` (SAM-H checkpoints): longest side to `size`, zero-pad right and bottom.
    - `stretch` (SAM-2/EfficientSAM, official code >= 9d00853): squash to size x size.
    - `longest_then_stretch` (older SAM-2/EfficientSAM checkpoints): longest side to `size`, normalise,
      then bilinearly stretch the float tensor to size x size.
    """

    size: int = 1024
    resize: SamResize = "longest_pad"
    mean: tuple[float, float, float] = SAM_MEAN
    std: tuple[float, float, float] = SAM_STD

    def _normalise(self, image: np.ndarray) -> Tensor:
        pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return (pixels - mean) / std

    def __call__(self, image: np.ndarray) -> tuple[Tensor, tuple[int, int]]:
        height, width = image.shape[:2]
        if self.resize == "stretch":
            return self._normalise(_pil_resize(image, self.size, self.size)), (self.size, self.size)
        resized_hw = longest_side_size(height, width, self.size)
        pixels = self._normalise(_pil_resize(image, *resized_hw))
        if self.resize == "longest_then_stretch":
            stretched = F.interpolate(pixels[None], size=(self.size, self.size), mode="bilinear", align_corners=False)
            return stretched[0], (self.size, self.size)
        padded = F.pad(pixels, (0, self.size - resized_hw[1], 0, self.size - resized_hw[0]))
        return padded, resized_hw


@dataclass(frozen=True)
class Beit3Preprocess:
    """uint8 RGB [H, W, 3] -> [3, size, size] in [-1, 1]: bicubic without antialias, mean = std = 0.5."""

    size: int = 224

    def __call__(self, image: np.ndarray) -> Tensor:
        pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div(255)
        resized = F.interpolate(
            pixels[None], size=(self.size, self.size), mode="bicubic", align_corners=False, antialias=False
        )[0]
        return (resized - 0.5) / 0.5


def upscale_mask_logits(
    low_res: Tensor,
    input_size: int,
    resized_hw: tuple[int, int],
    original_hw: tuple[int, int],
    resize: SamResize = "longest_pad",
) -> Tensor:
    """Low-resolution logits [N, h, w] -> logits at the original image size [N, H, W].

    The inverse of `SamPreprocess`: for `longest_pad` upsample to the padded input, crop the padding,
    then resize to the original; the stretch modes resize straight to the original size.
    """
    logits = low_res[:, None]
    if resize == "longest_pad":
        logits = F.interpolate(logits, size=(input_size, input_size), mode="bilinear", align_corners=False)
        logits = logits[..., : resized_hw[0], : resized_hw[1]]
    logits = F.interpolate(logits, size=tuple(original_hw), mode="bilinear", align_corners=False)
    return logits[:, 0]
