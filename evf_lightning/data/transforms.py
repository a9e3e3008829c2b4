"""Per-backbone preprocessing, exactly as the official code does it, and its inverse for mask logits.

reference/evf-sam-recipe.md §2 and checkpoints.md §6. Each released checkpoint was trained on one of
these recipes. A reproduction that resizes or normalises differently loses tens of cIoU points
(hustvl/EVF-SAM#54), so each recipe copies the official arithmetic step for step:

- SAM branch, on the uint8 RGB image. Resize with PIL bilinear; ResizeLongestSide rounds each side as
  `int(x * s + 0.5)` with `s = size / max(h, w)`. Then `(x - mean) / std` in fp32 on the 0..255 scale,
  then either zero padding (after normalising) or a bilinear stretch of the float tensor.
- BEiT-3 branch: ToTensor (0..1), then a bicubic resize to size x size *on the tensor*, then
  Normalize(0.5, 0.5). torchvision 0.15 (the official pin) did not antialias tensors, and torchvision's
  tensor resize is `F.interpolate(..., align_corners=False)`, so plain torch reproduces it without
  torchvision.

Why PIL and not albumentations: albumentations resizes through OpenCV. cv2.INTER_LINEAR matches PIL
bilinear only when upscaling, and even then only to +-1 grey level (fixed-point weights). When
downscaling, PIL widens its filter (antialiasing) and OpenCV does not. Measured on a 480x640 noise image
against PIL: to 384x512, INTER_LINEAR differs by up to 64 grey levels (mean 11) and INTER_AREA by up to
37; to 768x1024, INTER_LINEAR differs by up to 1 on 25% of the values. Those would be different inputs
from the ones the released models were trained on, so albumentations is not used here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

SamResize = Literal["longest_pad", "stretch", "longest_then_stretch"]
SAM_MEAN: tuple[float, float, float] = (123.675, 116.28, 103.53)
SAM_STD: tuple[float, float, float] = (58.395, 57.12, 57.375)
BEIT3_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
BEIT3_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)


def longest_side_size(height: int, width: int, target: int) -> tuple[int, int]:
    """(h', w') with the longest side at `target`, rounded as segment-anything's ResizeLongestSide.

    Halves round up (`int(x + 0.5)`), where Python's `round` would round 2.5 down to 2; the arithmetic
    (scale first, then each side times the scale) is the official one, operation for operation.
    """
    scale = target * 1.0 / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def _check_image(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or 0 in image.shape:
        raise ValueError(f"expected a uint8 RGB image [H, W, 3]; got {image.dtype} {tuple(image.shape)}")


def pil_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 [H, W, 3] -> uint8 [height, width, 3] by PIL bilinear, as torchvision resizes PIL images."""
    resized = Image.fromarray(np.ascontiguousarray(image)).resize((width, height), Image.Resampling.BILINEAR)
    return np.array(resized)  # writable, so torch.from_numpy can share it without a warning


def normalise(image: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """uint8 [H, W, 3] -> float32 [3, H, W] as `(x - mean) / std`, in fp32 on the 0..255 scale."""
    pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
    return (pixels - torch.tensor(mean).view(-1, 1, 1)) / torch.tensor(std).view(-1, 1, 1)


def resize_longest_pad(
    image: np.ndarray, size: int = 1024, mean: tuple[float, ...] = SAM_MEAN, std: tuple[float, ...] = SAM_STD
) -> tuple[Tensor, tuple[int, int]]:
    """SAM-H ("ori"): longest side to `size`, normalise, zero-pad right and bottom to size x size."""
    _check_image(image)
    resized_hw = longest_side_size(image.shape[0], image.shape[1], size)
    pixels = normalise(pil_bilinear(image, *resized_hw), mean, std)
    return F.pad(pixels, (0, size - resized_hw[1], 0, size - resized_hw[0])), resized_hw


def stretch(
    image: np.ndarray, size: int = 1024, mean: tuple[float, ...] = SAM_MEAN, std: tuple[float, ...] = SAM_STD
) -> tuple[Tensor, tuple[int, int]]:
    """SAM-2 / EfficientSAM, official code >= 9d00853: PIL bilinear to size x size ignoring the aspect."""
    _check_image(image)
    return normalise(pil_bilinear(image, size, size), mean, std), (size, size)


def resize_longest_then_stretch(
    image: np.ndarray, size: int = 1024, mean: tuple[float, ...] = SAM_MEAN, std: tuple[float, ...] = SAM_STD
) -> tuple[Tensor, tuple[int, int]]:
    """SAM-2 / EfficientSAM, official code < 9d00853: longest side to `size`, normalise, then stretch.

    The stretch is a bilinear `F.interpolate` of the unpadded float tensor. The model's input covers
    the whole size x size square, so the resized size returned is (size, size).
    """
    _check_image(image)
    resized_hw = longest_side_size(image.shape[0], image.shape[1], size)
    pixels = normalise(pil_bilinear(image, *resized_hw), mean, std)
    stretched = F.interpolate(pixels[None], size=(size, size), mode="bilinear", align_corners=False)
    return stretched[0], (size, size)


_SAM_RESIZERS = {
    "longest_pad": resize_longest_pad,
    "stretch": stretch,
    "longest_then_stretch": resize_longest_then_stretch,
}


@dataclass(frozen=True)
class SamPreprocess:
    """uint8 RGB [H, W, 3] -> (normalised float32 [3, size, size], resized (h', w')).

    `resize` is the recipe that goes with the checkpoint (evf-sam-recipe.md §2):
    - `longest_pad`: evf-sam and evf-sam-multitask (SAM ViT-H).
    - `stretch`: evf-sam2-multitask, and anything trained with the official code >= 9d00853.
    - `longest_then_stretch`: evf-sam2 and the EVF-Effi-SAM checkpoints (code before 9d00853).
    (h', w') is the part of the input that holds the image. It is what `upscale_mask_logits` crops to.
    """

    size: int = 1024
    resize: SamResize = "longest_pad"
    mean: tuple[float, float, float] = SAM_MEAN
    std: tuple[float, float, float] = SAM_STD

    def __post_init__(self) -> None:
        if self.resize not in _SAM_RESIZERS:
            raise ValueError(f"resize must be one of {sorted(_SAM_RESIZERS)}, not {self.resize!r}")

    def __call__(self, image: np.ndarray) -> tuple[Tensor, tuple[int, int]]:
        return _SAM_RESIZERS[self.resize](image, self.size, self.mean, self.std)

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """The (h', w') that `__call__` returns for an image of this size, without resizing it."""
        if self.resize == "longest_pad":
            return longest_side_size(height, width, self.size)
        return self.size, self.size


def beit3_preprocess(image: np.ndarray, size: int = 224) -> Tensor:
    """uint8 RGB [H, W, 3] -> float32 [3, size, size] in [-1, 1]-ish (bicubic may overshoot slightly)."""
    _check_image(image)
    unit = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div(255)
    resized = F.interpolate(unit[None], (size, size), mode="bicubic", align_corners=False, antialias=False)
    return (resized[0] - torch.tensor(BEIT3_MEAN).view(-1, 1, 1)) / torch.tensor(BEIT3_STD).view(-1, 1, 1)


@dataclass(frozen=True)
class Beit3Preprocess:
    """The BEiT-3 branch of every variant: bicubic to size x size, no antialiasing, mean = std = 0.5."""

    size: int = 224

    def __call__(self, image: np.ndarray) -> Tensor:
        return beit3_preprocess(image, self.size)


def upscale_mask_logits(
    low_res: Tensor,
    input_size: int,
    resized_hw: tuple[int, int],
    original_hw: tuple[int, int],
    resize: SamResize = "longest_pad",
) -> Tensor:
    """Low-resolution mask logits [N, h, w] -> float32 logits at the original image size [N, H, W].

    This inverts `SamPreprocess`, as the official postprocess does (in fp32, bilinear,
    align_corners=False). For `longest_pad`: upsample to the padded input size, crop away the padding to
    (h', w'), then resize to (H, W). Upsampling before cropping matters, because the padding boundary
    falls between low-res pixels. The stretch modes resize straight to (H, W).
    """
    if low_res.dim() != 3:
        raise ValueError(f"expected low-resolution logits [N, h, w]; got {tuple(low_res.shape)}")
    if resize not in _SAM_RESIZERS:
        raise ValueError(f"resize must be one of {sorted(_SAM_RESIZERS)}, not {resize!r}")
    logits = low_res[:, None].float()
    if resize == "longest_pad":
        height, width = resized_hw
        if not (0 < height <= input_size and 0 < width <= input_size):
            raise ValueError(f"resized size {tuple(resized_hw)} does not fit the {input_size}^2 input")
        logits = F.interpolate(logits, size=(input_size, input_size), mode="bilinear", align_corners=False)
        logits = logits[..., :height, :width]
    logits = F.interpolate(logits, size=tuple(original_hw), mode="bilinear", align_corners=False)
    return logits[:, 0]


def upscale_batch_logits(
    low_res: Tensor,
    image_index: Tensor,
    resized_hw: Sequence[tuple[int, int]],
    original_hw: Sequence[tuple[int, int]],
    input_size: int,
    resize: SamResize = "longest_pad",
) -> list[Tensor]:
    """A batch's low-resolution logits [N, h, w] -> per image, its expressions' fp32 logits [n_i, H_i, W_i].

    Expression n belongs to image `image_index[n]`; training, evaluation and prediction all cut a batch back into
    images here, so a mask predicted for a user's image is the one evaluation would score.
    """
    return [
        upscale_mask_logits(low_res[image_index == i], input_size, resized_hw[i], original_hw[i], resize)
        for i in range(len(original_hw))
    ]
