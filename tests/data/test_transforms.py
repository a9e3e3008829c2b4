"""Preprocessing numbers against an independent PIL/NumPy computation of the official recipe."""

import numpy as np
import pytest
import torch
from PIL import Image

from evf_lightning.data.transforms import (
    SAM_MEAN,
    SAM_STD,
    Beit3Preprocess,
    SamPreprocess,
    upscale_mask_logits,
)


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(37, 53, 3), dtype=np.uint8)


def reference_sam(image: np.ndarray, h: int, w: int) -> np.ndarray:
    resized = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR), dtype=np.float32)
    return ((resized - np.array(SAM_MEAN)) / np.array(SAM_STD)).transpose(2, 0, 1)


def test_longest_pad_rounds_like_segment_anything_and_pads_with_zeros(image):
    pixels, resized_hw = SamPreprocess(size=64, resize="longest_pad")(image)
    # s = 64/53; h' = int(37 * s + 0.5) = 45
    assert resized_hw == (int(37 * 64 / 53 + 0.5), 64) == (45, 64)
    assert pixels.shape == (3, 64, 64)
    np.testing.assert_allclose(pixels[:, :45].numpy(), reference_sam(image, 45, 64), atol=1e-5)
    assert torch.count_nonzero(pixels[:, 45:]) == 0


def test_stretch_ignores_aspect(image):
    pixels, resized_hw = SamPreprocess(size=32, resize="stretch")(image)
    assert resized_hw == (32, 32)
    np.testing.assert_allclose(pixels.numpy(), reference_sam(image, 32, 32), atol=1e-5)


def test_longest_then_stretch_interpolates_the_normalised_tensor(image):
    pixels, _ = SamPreprocess(size=64, resize="longest_then_stretch")(image)
    small = torch.from_numpy(reference_sam(image, 45, 64)).float()[None]
    expected = torch.nn.functional.interpolate(small, size=(64, 64), mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(pixels, expected, atol=1e-4, rtol=1e-4)


def test_beit3_branch_is_bicubic_without_antialias_in_minus_one_one(image):
    pixels = Beit3Preprocess(size=16)(image)
    assert pixels.shape == (3, 16, 16)
    unit = torch.from_numpy(image).permute(2, 0, 1).float()[None] / 255
    expected = torch.nn.functional.interpolate(unit, size=(16, 16), mode="bicubic", align_corners=False)[0]
    torch.testing.assert_close(pixels, expected * 2 - 1)
    # without antialiasing the result differs from an antialiased resize of the same image
    smoothed = torch.nn.functional.interpolate(unit, size=(16, 16), mode="bicubic", antialias=True)[0] * 2 - 1
    assert not torch.allclose(pixels, smoothed, atol=1e-3)


@pytest.mark.parametrize("resize", ["longest_pad", "stretch"])
def test_postprocess_inverts_preprocess_on_a_mask(resize):
    mask = np.zeros((37, 53), dtype=np.uint8)
    mask[5:30, 10:40] = 1
    rgb = np.repeat(mask[..., None] * 255, 3, axis=2).astype(np.uint8)
    pixels, resized_hw = SamPreprocess(size=64, resize=resize)(rgb)
    # a "logit" map in the model's input frame: positive where the mask is, downsampled 4x as SAM's
    logit_input = (pixels[0] > 0).float() * 2 - 1
    low_res = torch.nn.functional.interpolate(logit_input[None, None], size=(16, 16), mode="bilinear")[0]
    back = upscale_mask_logits(low_res, 64, resized_hw, (37, 53), resize) > 0
    assert back.shape == (1, 37, 53)
    iou = (back[0].numpy() & (mask > 0)).sum() / (back[0].numpy() | (mask > 0)).sum()
    assert iou > 0.85
