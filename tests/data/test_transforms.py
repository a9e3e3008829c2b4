"""Preprocessing against an independent PIL/NumPy computation of each official recipe, and its inverse.

The NumPy resamplers below are written from the definitions PyTorch documents (half-pixel centres,
align_corners=False, no antialiasing; Keys' cubic with a = -0.75). So the tests pin the arithmetic
itself, not just "whatever F.interpolate does".
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from evf_lightning.data.transforms import (
    SAM_MEAN,
    SAM_STD,
    Beit3Preprocess,
    SamPreprocess,
    longest_side_size,
    resize_longest_pad,
    resize_longest_then_stretch,
    stretch,
    upscale_mask_logits,
)


# ----- independent references ---------------------------------------------------------------------
def _taps_linear(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] bilinear weights: src = (d + 0.5) * n_in / n_out - 0.5, clamped at 0."""
    weights = np.zeros((n_out, n_in))
    for d in range(n_out):
        src = max((d + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = int(np.floor(src))
        i1, frac = min(i0 + 1, n_in - 1), src - i0
        weights[d, i0] += 1 - frac
        weights[d, i1] += frac
    return weights


def _cubic(x: float, a: float = -0.75) -> float:
    x = abs(x)
    if x <= 1:
        return ((a + 2) * x - (a + 3)) * x * x + 1
    if x < 2:
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return 0.0


def _taps_cubic(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] bicubic weights, src not clamped, the four taps clamped to the border."""
    weights = np.zeros((n_out, n_in))
    for d in range(n_out):
        src = (d + 0.5) * n_in / n_out - 0.5
        i = int(np.floor(src))
        for k in range(-1, 3):
            weights[d, min(max(i + k, 0), n_in - 1)] += _cubic(src - (i + k))
    return weights


def np_resize(chw: np.ndarray, height: int, width: int, taps) -> np.ndarray:
    """Separable resize of [C, H, W] float64."""
    rows, cols = taps(chw.shape[1], height), taps(chw.shape[2], width)
    return np.einsum("oh,chw,pw->cop", rows, chw.astype(np.float64), cols)


def np_sam_normalise(hwc_uint8: np.ndarray) -> np.ndarray:
    return ((hwc_uint8.astype(np.float64) - np.array(SAM_MEAN)) / np.array(SAM_STD)).transpose(2, 0, 1)


def pil_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


@pytest.fixture(params=[(37, 53), (61, 29), (20, 15)], ids=["landscape", "portrait-down", "upscale"])
def image(request: pytest.FixtureRequest) -> np.ndarray:
    h, w = request.param
    return np.random.default_rng(h * w).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


# ----- SAM branch ----------------------------------------------------------------------------------
def test_resized_size_rounds_halves_up_like_segment_anything() -> None:
    assert longest_side_size(37, 53, 64) == (int(37 * (64 / 53) + 0.5), 64) == (45, 64)
    assert longest_side_size(5, 10, 5) == (3, 5)  # 2.5 -> 3, where Python's round() gives 2
    assert longest_side_size(683, 1024, 1024) == (683, 1024)
    assert longest_side_size(480, 640, 1024) == (768, 1024)


def test_longest_pad_is_pil_bilinear_normalised_then_zero_padded(image: np.ndarray) -> None:
    size = 48
    pixels, (h, w) = SamPreprocess(size=size, resize="longest_pad")(image)
    assert (h, w) == longest_side_size(*image.shape[:2], size) and max(h, w) == size
    assert pixels.shape == (3, size, size) and pixels.dtype == torch.float32
    expected = np_sam_normalise(pil_resize(image, h, w))
    np.testing.assert_allclose(pixels[:, :h, :w].numpy(), expected, atol=1e-5)
    assert torch.count_nonzero(pixels[:, h:, :]) == 0 and torch.count_nonzero(pixels[:, :, w:]) == 0


def test_stretch_is_pil_bilinear_to_the_square_ignoring_aspect(image: np.ndarray) -> None:
    pixels, resized_hw = SamPreprocess(size=32, resize="stretch")(image)
    assert resized_hw == (32, 32) and pixels.shape == (3, 32, 32)
    np.testing.assert_allclose(pixels.numpy(), np_sam_normalise(pil_resize(image, 32, 32)), atol=1e-5)


def test_longest_then_stretch_bilinearly_stretches_the_normalised_tensor(image: np.ndarray) -> None:
    size = 48
    pixels, resized_hw = SamPreprocess(size=size, resize="longest_then_stretch")(image)
    assert resized_hw == (size, size) and pixels.shape == (3, size, size)
    h, w = longest_side_size(*image.shape[:2], size)
    expected = np_resize(np_sam_normalise(pil_resize(image, h, w)), size, size, _taps_linear)
    np.testing.assert_allclose(pixels.numpy(), expected, atol=1e-4)


def test_the_three_modes_really_differ_and_the_dataclass_dispatches(image: np.ndarray) -> None:
    modes = {
        "longest_pad": resize_longest_pad,
        "stretch": stretch,
        "longest_then_stretch": resize_longest_then_stretch,
    }
    outputs = {}
    for mode, function in modes.items():
        outputs[mode], hw = SamPreprocess(size=40, resize=mode)(image)
        direct, direct_hw = function(image, 40)
        assert torch.equal(outputs[mode], direct) and hw == direct_hw
    assert not torch.allclose(outputs["stretch"], outputs["longest_then_stretch"], atol=1e-2)
    assert not torch.allclose(outputs["stretch"], outputs["longest_pad"], atol=1e-2)


def test_pil_bilinear_is_not_opencv_bilinear() -> None:
    """Why albumentations (OpenCV) is not used: its linear resize does not antialias when shrinking."""
    cv2 = pytest.importorskip("cv2")
    img = np.random.default_rng(0).integers(0, 256, size=(96, 128, 3), dtype=np.uint8)
    shrunk = cv2.resize(img, (64, 48), interpolation=cv2.INTER_LINEAR).astype(int)
    assert np.abs(shrunk - pil_resize(img, 48, 64).astype(int)).max() > 10


def test_bad_images_and_modes_are_refused() -> None:
    with pytest.raises(ValueError, match="uint8 RGB"):
        SamPreprocess(size=16)(np.zeros((8, 8, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="uint8 RGB"):
        Beit3Preprocess(size=16)(np.zeros((8, 8), dtype=np.uint8))
    with pytest.raises(ValueError, match="resize must be one of"):
        SamPreprocess(resize="letterbox")  # type: ignore[arg-type]


# ----- BEiT-3 branch -------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [16, 64])
def test_beit3_is_bicubic_without_antialias_then_half_half(image: np.ndarray, size: int) -> None:
    pixels = Beit3Preprocess(size=size)(image)
    assert pixels.shape == (3, size, size) and pixels.dtype == torch.float32
    unit = image.transpose(2, 0, 1).astype(np.float64) / 255
    expected = (np_resize(unit, size, size, _taps_cubic) - 0.5) / 0.5
    np.testing.assert_allclose(pixels.numpy(), expected, atol=1e-5)
    if size < min(image.shape[:2]):  # shrinking: an antialiased resize would be a different input
        aa = torch.nn.functional.interpolate(
            torch.from_numpy(unit).float()[None], (size, size), mode="bicubic", antialias=True
        )
        assert np.abs((aa[0].numpy() - 0.5) / 0.5 - pixels.numpy()).max() > 0.05


# ----- postprocess ---------------------------------------------------------------------------------
def test_longest_pad_round_trip_is_exact_when_nothing_is_resized() -> None:
    """Longest side already at `size` and logits at input size: every step but the crop is identity."""
    logits = torch.randn(2, 64, 64)
    out = upscale_mask_logits(logits, 64, (64, 40), (64, 40), "longest_pad")
    assert out.shape == (2, 64, 40) and torch.equal(out, logits[:, :64, :40])


def test_longest_pad_crops_the_padding_before_resizing() -> None:
    """Positive logits only in the padding rows must not reach the original-size mask."""
    low_res = torch.full((1, 16, 16), -10.0)
    low_res[:, 12:] = 10.0  # rows >= 48 of the 64-pixel input: padding for a 45-row image
    out = upscale_mask_logits(low_res, 64, (45, 64), (37, 53), "longest_pad")
    assert out.shape == (1, 37, 53) and bool((out < 0).all())
    leaked = upscale_mask_logits(low_res, 64, (45, 64), (37, 53), "stretch")
    assert bool((leaked > 0).any())


@pytest.mark.parametrize("resize", ["longest_pad", "stretch", "longest_then_stretch"])
def test_mask_survives_preprocess_then_postprocess(resize: str) -> None:
    """A mask drawn as an image, taken to the model frame, shrunk 4x as SAM's logits, and brought back."""
    height, width, size = 150, 200, 128
    mask = np.zeros((height, width), dtype=bool)
    mask[20:110, 30:90] = True
    mask[60:140, 120:185] = True
    rgb = np.repeat(mask[..., None] * np.uint8(255), 3, axis=2)
    pixels, resized_hw = SamPreprocess(size=size, resize=resize)(rgb)
    frame = torch.where(pixels[0] > 0, 4.0, -4.0)  # logit map in the model's input frame
    if resize == "longest_pad":
        frame[resized_hw[0] :, :] = 4.0  # padding would read as "mask" if it were not cropped
    low_res = torch.nn.functional.interpolate(frame[None, None], size=(size // 4, size // 4), mode="area")[0]
    back = upscale_mask_logits(low_res, size, resized_hw, (height, width), resize)[0].numpy() > 0
    iou = (back & mask).sum() / (back | mask).sum()
    assert iou > 0.95, iou


def test_stretch_postprocess_is_one_bilinear_resize_in_fp32() -> None:
    low_res = torch.randn(3, 16, 16).bfloat16()
    out = upscale_mask_logits(low_res, 64, (64, 64), (37, 53), "stretch")
    assert out.dtype == torch.float32 and out.shape == (3, 37, 53)
    expected = np_resize(low_res.float().numpy(), 37, 53, _taps_linear)
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-5)


def test_longest_pad_postprocess_matches_numpy() -> None:
    low_res = torch.randn(2, 16, 16)
    out = upscale_mask_logits(low_res, 64, (45, 64), (37, 53), "longest_pad")
    full = np_resize(low_res.numpy(), 64, 64, _taps_linear)[:, :45, :64]
    np.testing.assert_allclose(out.numpy(), np_resize(full, 37, 53, _taps_linear), atol=1e-5)
