"""Users' images as the model reads them: any file PIL opens, any mode, upright as the camera meant it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Transparent pixels are shown on white, as image viewers do, rather than on whatever RGB they happen to hold.
BACKGROUND_RGB = (255, 255, 255)


class ImageReadError(ValueError):
    """A file that is not an image this program can read."""


def to_rgb(image: Image.Image) -> np.ndarray:
    """uint8 RGB [H, W, 3] of any PIL image: EXIF orientation applied, transparency over white, grey and
    palette and CMYK converted."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*BACKGROUND_RGB, 255))
        image = Image.alpha_composite(canvas, rgba)
    return np.array(image.convert("RGB"))


def read_image(path: Path) -> np.ndarray:
    """uint8 RGB [H, W, 3] of an image file (see `to_rgb`); a missing or unreadable file is named."""
    if not path.is_file():
        raise ImageReadError(f"image {path} does not exist")
    try:
        with Image.open(path) as image:
            return to_rgb(image)
    except (UnidentifiedImageError, OSError, ValueError) as error:  # truncated files are OSErrors
        raise ImageReadError(f"cannot read image {path}: {error}") from error
