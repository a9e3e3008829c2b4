"""What a person looks at: the mask painted over the image, with the prompt written under it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# The mask painted in this colour at this opacity over the image.
OVERLAY_RGB = (255, 0, 0)
OVERLAY_ALPHA = 0.5
CAPTION_RGB = (255, 255, 255)
CAPTION_BACKGROUND = (0, 0, 0)


def paint_mask(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """uint8 RGB [H, W, 3]: `mask` (bool [H, W]) tinted over `image`."""
    colour = np.array(OVERLAY_RGB, dtype=np.float32)
    painted = np.where(mask[..., None], (1 - OVERLAY_ALPHA) * image + OVERLAY_ALPHA * colour, image)
    return painted.round().astype(np.uint8)


def overlay_with_caption(image: np.ndarray, mask: np.ndarray, caption: str) -> np.ndarray:
    """The painted image with a band under it that holds `caption` (the prompt), sized to the image's width."""
    painted = Image.fromarray(paint_mask(image, mask))
    size = max(10, min(32, painted.width // 24))
    font = ImageFont.load_default(size=size)
    band = size + size // 2
    out = Image.new("RGB", (painted.width, painted.height + band), CAPTION_BACKGROUND)
    out.paste(painted, (0, 0))
    ImageDraw.Draw(out).text((size // 4, painted.height + size // 4), caption, fill=CAPTION_RGB, font=font)
    return np.array(out)


def mask_image(mask: np.ndarray) -> np.ndarray:
    """uint8 [H, W] of a bool mask: 255 on the object, 0 elsewhere, as mask files hold it."""
    return mask.astype(np.uint8) * 255


def write_mask(mask: np.ndarray, path: Path) -> Path:
    """A binary mask PNG (see `mask_image`), the image's size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask_image(mask)).save(path)
    return path


def write_image(image: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path
