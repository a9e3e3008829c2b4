"""An exported model as an MLflow pyfunc: what the Model Registry serves and `mlflow.pyfunc.load_model` returns.

Input: a list of `{"image": ..., "prompt": ...}` rows (or a pandas DataFrame with those two string columns, which
MLflow turns into rows), validated by MLflow against `MaskRequest`:

* `image`: an image file (PNG, JPEG, ...), as a path or as its bytes base64-encoded;
* `prompt`: the referring expression to segment in it.

Output: one mask per row, in row order: a list of bool numpy arrays [H, W] at the image's size, exactly
`Predictor.predict`'s. Rows of one image (the same `image` value) share one image encoding.

The model is saved as code (`MODEL_CODE`, MLflow's models-from-code), not as a pickle: loading a registered
version runs our module, never unpickles an object.
"""

from __future__ import annotations

import base64
import binascii
import io
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pydantic
from PIL import Image, UnidentifiedImageError

from evf_lightning.serve.images import ImageReadError, read_image, to_rgb

# The name of the exported folder among the pyfunc model's artifacts.
MODEL_ARTIFACT = "evf_model"
# The file MLflow saves and runs to build the model (it calls `set_model`).
MODEL_CODE = Path(__file__).with_name("pyfunc_model.py")


class MaskRequest(pydantic.BaseModel):
    """One row of input: an image (path or base64 of the file) and the expression to segment in it."""

    image: str
    prompt: str


class EvfPyfuncModel(mlflow.pyfunc.PythonModel):
    """Loads the exported folder with `load_predictor` and predicts masks for (image, prompt) rows."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        from evf_lightning.serve.predictor import load_predictor

        self.predictor = load_predictor(Path(context.artifacts[MODEL_ARTIFACT]))

    # MLflow reads the input signature from this type hint and validates every input against it; the return has
    # no hint, as MLflow has no type for a list of arrays.
    def predict(self, context: Any, model_input: list[MaskRequest], params: dict[str, Any] | None = None):
        by_image: dict[str, list[int]] = {}
        for index, row in enumerate(model_input):
            by_image.setdefault(row.image, []).append(index)
        masks: list[np.ndarray | None] = [None] * len(model_input)
        for image, indices in by_image.items():
            pixels = decode_image(image, f"row {indices[0]}")
            prompts = [model_input[i].prompt for i in indices]
            for index, mask in zip(indices, self.predictor.predict(pixels, prompts), strict=True):
                masks[index] = mask
        return masks


def decode_image(image: str, where: str) -> np.ndarray:
    """uint8 RGB of an image given as a file path or base64 of the file; `where` names it in errors."""
    if _is_file(image):
        return read_image(Path(image))
    try:
        data = base64.b64decode(image, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ImageReadError(f"{where}: image {image[:80]!r} is neither an existing file nor base64") from error
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
