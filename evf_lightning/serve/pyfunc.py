"""An exported model as an MLflow pyfunc: what the Model Registry serves and `mlflow.pyfunc.load_model` returns.

Input: a pandas DataFrame (or a dict of columns, a list of row dicts, or one row dict) with two columns,

* `image`: an image file, as a path or as its encoded bytes (PNG, JPEG, ... or those bytes base64-encoded);
* `prompt`: the referring expression to segment in it.

Output: one mask per row, in row order: a list of bool numpy arrays [H, W] at the image's size, exactly
`Predictor.predict`'s. Rows of one image (the same `image` value) share one image encoding.
"""

from __future__ import annotations

import base64
import binascii
import io
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
from PIL import Image, UnidentifiedImageError

from evf_lightning.serve.images import ImageReadError, read_image, to_rgb

# The name of the exported folder among the pyfunc model's artifacts.
MODEL_ARTIFACT = "evf_model"
COLUMNS = ("image", "prompt")


class EvfPyfuncModel(mlflow.pyfunc.PythonModel):
    """Loads the exported folder with `load_predictor` and predicts masks for (image, prompt) rows."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        from evf_lightning.serve.predictor import load_predictor

        self.predictor = load_predictor(Path(context.artifacts[MODEL_ARTIFACT]))

    def predict(self, context: Any, model_input: Any, params: dict[str, Any] | None = None) -> list[np.ndarray]:
        rows = input_rows(model_input)
        by_image: dict[Any, list[int]] = {}
        for index, (image, _) in enumerate(rows):
            by_image.setdefault(image, []).append(index)
        masks: list[np.ndarray | None] = [None] * len(rows)
        for image, indices in by_image.items():
            pixels = decode_image(image, f"row {indices[0]}")
            for index, mask in zip(indices, self.predictor.predict(pixels, [rows[i][1] for i in indices]), strict=True):
                masks[index] = mask
        return masks


def input_rows(model_input: Any) -> list[tuple[str | bytes, str]]:
    """(image, prompt) per row of a DataFrame, a dict of columns, a list of row dicts or one row dict."""
    import pandas as pd

    if isinstance(model_input, dict):
        model_input = pd.DataFrame(model_input if isinstance(model_input.get("image"), list) else [model_input])
    elif isinstance(model_input, list):
        model_input = pd.DataFrame(model_input)
    if not isinstance(model_input, pd.DataFrame):
        raise TypeError(f"expected a DataFrame or dict with columns {COLUMNS}; got {type(model_input).__name__}")
    missing = [column for column in COLUMNS if column not in model_input.columns]
    if missing:
        raise ValueError(f"input lacks the columns {missing}; it has {list(model_input.columns)}")
    if model_input.empty:
        raise ValueError("input has no rows")
    return list(zip(model_input["image"], model_input["prompt"], strict=True))


def decode_image(image: str | bytes, where: str) -> np.ndarray:
    """uint8 RGB of an image given as a file path, encoded bytes or base64 of them; `where` names it in errors."""
    if isinstance(image, str) and _is_file(image):
        return read_image(Path(image))
    data = image
    if isinstance(image, str):
        try:
            data = base64.b64decode(image, validate=True)
        except (binascii.Error, ValueError) as error:
            raise ImageReadError(f"{where}: image {image[:80]!r} is neither an existing file nor base64") from error
    if not isinstance(data, bytes):
        raise ImageReadError(f"{where}: image must be a path, bytes or base64 text, not {type(image).__name__}")
    try:
        with Image.open(io.BytesIO(data)) as opened:
            return to_rgb(opened)
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise ImageReadError(f"{where}: the image bytes do not decode: {error}") from error


def _is_file(text: str) -> bool:
    """Whether `text` names a file; base64 text is too long a name for the OS, which is an answer too."""
    try:
        return Path(text).is_file()
    except OSError:
        return False
