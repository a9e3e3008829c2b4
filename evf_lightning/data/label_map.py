"""Semantic label maps as 8-bit PNGs next to JPEGs: what ADE20K and human parsing share (datasets.md §5, §8).

One item per label PNG of a folder, in name order (the official loaders list and sort the folder); the image is
the JPEG of the same stem in the image folder. The official loaders read labels with `cv2.imread(path, 0)`,
which gives the stored values only for 8-bit grayscale ("L") files, so any other mode is an error here rather
than silently wrong class ids. Each class present is one prompt, `"[semantic] " + name`, in ascending class
order (what `np.unique` gives), and its mask is every pixel of that class.

`write_label_pair` paints the same files for the synthetic fixtures: one polygon list drawn twice, as colours
into the JPEG and as values into the label PNG, so every label pixel lies on its painted shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError

from evf_lightning.data.refer import expression_indices, expression_text, read_rgb
from evf_lightning.data.sample import ReferringSample

SEMANTIC_PREFIX = "[semantic] "
LABEL_SUFFIX = ".png"
IMAGE_SUFFIX = ".jpg"


@dataclass(frozen=True)
class LabelCodec:
    """How stored label values map to class names: value v names class v - offset; `ignored` values are
    unlabelled and never prompted. `origin` says where the names come from, for error messages."""

    names: tuple[str, ...]
    offset: int
    ignored: frozenset[int]
    origin: str

    def is_class(self, value: int) -> bool:
        return 0 <= value - self.offset < len(self.names)

    def name(self, value: int) -> str:
        return self.names[value - self.offset]

    def describe_range(self) -> str:
        last = self.offset + len(self.names) - 1
        ignored = f"; {sorted(self.ignored)} mean unlabelled" if self.ignored else ""
        return f"{self.origin} names {len(self.names)} classes, stored as values {self.offset}..{last}{ignored}"


class LabelMapReader:
    """Images with one 8-bit label PNG each; one prompt per class present. The `SampleReader` of ADE20K and
    human parsing.

    `name` (dataset/split) starts every `source` and error. Every PNG must have its JPEG: a missing one is an
    error here, before training, naming both paths.
    """

    def __init__(self, name: str, label_dir: Path, image_dir: Path, codec: LabelCodec) -> None:
        self.name = name
        self.label_dir = label_dir
        self.image_dir = image_dir
        self.codec = codec
        for what, folder in (("label", label_dir), ("image", image_dir)):
            if not folder.is_dir():
                raise FileNotFoundError(f"{name}: the {what} folder {folder} does not exist")
        self._stems = tuple(sorted(p.name[: -len(LABEL_SUFFIX)] for p in label_dir.glob("*" + LABEL_SUFFIX)))
        if not self._stems:
            raise ValueError(f"{name}: the label folder {label_dir} holds no {LABEL_SUFFIX} file")
        present = {p.name for p in image_dir.iterdir()}
        missing = [stem for stem in self._stems if stem + IMAGE_SUFFIX not in present]
        if missing:
            raise FileNotFoundError(
                f"{name}: {len(missing)} of {len(self._stems)} label files have no image; e.g. "
                f"{label_dir / (missing[0] + LABEL_SUFFIX)} needs {image_dir / (missing[0] + IMAGE_SUFFIX)}"
            )
        self._classes: dict[int, tuple[int, ...]] = {}
        self._last: tuple[int, np.ndarray] | None = None  # the map decoded last: counting then loading reads it once

    def __len__(self) -> int:
        return len(self._stems)

    def image_path(self, index: int) -> Path:
        return self.image_dir / (self._stems[index] + IMAGE_SUFFIX)

    def label_path(self, index: int) -> Path:
        return self.label_dir / (self._stems[index] + LABEL_SUFFIX)

    def source(self, index: int) -> str:
        return f"{self.name} {self._stems[index]} (image {self.image_path(index)}, label {self.label_path(index)})"

    def class_values(self, index: int) -> tuple[int, ...]:
        """The stored values of the classes present, ascending; one prompt each."""
        if index not in self._classes:
            self._label(index)
        return self._classes[index]

    def num_expressions(self, index: int) -> int:
        return len(self.class_values(index))

    def texts(self, index: int, normalise_text: bool = False) -> list[str]:
        return [expression_text(SEMANTIC_PREFIX + self.codec.name(v), normalise_text) for v in self.class_values(index)]

    def load(
        self, index: int, expressions: Sequence[int] | None = None, normalise_text: bool = False
    ) -> ReferringSample:
        """The image, the chosen class prompts (all by default) and one binary mask each (pixel == class)."""
        source = self.source(index)
        label = self._label(index)
        values = self._classes[index]
        if not values:
            raise ValueError(
                f"{source}: the label map has no labelled pixel ({self.codec.describe_range()}); "
                "the official loader draws another image instead"
            )
        texts = self.texts(index, normalise_text)
        chosen = expression_indices(len(values), expressions, source)
        values = tuple(values[i] for i in chosen)
        texts = [texts[i] for i in chosen]
        image = read_rgb(self.image_path(index), source)
        if image.shape[:2] != label.shape:
            raise ValueError(
                f"{source}: the image is {image.shape[0]}x{image.shape[1]} (h x w) but its label map is "
                f"{label.shape[0]}x{label.shape[1]}, so the masks would not fit the image"
            )
        masks = (
            np.stack([label == v for v in values]).astype(np.uint8)
            if values
            else np.zeros((0, *label.shape), dtype=np.uint8)
        )
        return ReferringSample(image=image, texts=texts, masks=masks, source=source)

    def _label(self, index: int) -> np.ndarray:
        """The stored values [H, W] uint8 of a mode "L" PNG, checked against the class list."""
        if self._last is not None and self._last[0] == index:
            return self._last[1]
        path = self.label_path(index)
        try:
            with Image.open(path) as file:
                mode = file.mode
                label = np.array(file) if mode == "L" else None
        except FileNotFoundError as error:
            raise FileNotFoundError(f"label file {path} of {self.name} does not exist") from error
        except (UnidentifiedImageError, OSError, ValueError) as error:
            raise OSError(f"label file {path} of {self.name} cannot be read: {error}") from error
        if label is None:
            hint = " (palette: class ids are lost)" if mode == "P" else ""
            raise ValueError(
                f"label file {path} of {self.name} has PNG mode {mode!r}{hint}; the official loader reads labels "
                "with cv2.imread(path, 0), which keeps class ids only for 8-bit grayscale, so it must be mode 'L'"
            )
        values, counts = np.unique(label, return_counts=True)
        classes = []
        for value, count in zip(values.tolist(), counts.tolist(), strict=True):
            if value in self.codec.ignored:
                continue
            if not self.codec.is_class(value):
                raise ValueError(
                    f"label file {path} of {self.name} holds value {value} ({count} pixels), which names no class: "
                    f"{self.codec.describe_range()}"
                )
            classes.append(value)
        self._classes[index] = tuple(classes)
        self._last = (index, label)
        return label


@dataclass(frozen=True)
class LabelMapSummary:
    """What a synthetic label-map writer wrote: per label PNG (path relative to `root`), the values it holds."""

    root: Path
    values: dict[str, tuple[int, ...]]


@dataclass(frozen=True)
class LabelPart:
    """One region of a synthetic label map: stored value, polygon [K, 2] in (x, y) pixels, and its colour."""

    value: int
    polygon: np.ndarray
    colour: tuple[int, int, int]


def write_label_pair(
    image_path: Path,
    label_path: Path,
    parts: Sequence[LabelPart],
    height: int,
    width: int,
    rng: np.random.Generator,
    background: int = 0,
) -> np.ndarray:
    """Paint `parts` in order (later ones cover earlier) into a noisy JPEG and a mode "L" label PNG filled with
    `background`; return the label map written. Colours are jittered by up to 12 per channel."""
    base = rng.integers(150, 226) + rng.integers(-12, 13, size=3)
    noise = rng.normal(0.0, 5.0, size=(height, width, 3))
    image = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))
    label = Image.new("L", (width, height), background)
    paint, mark = ImageDraw.Draw(image), ImageDraw.Draw(label)
    for part in parts:
        points = [tuple(p) for p in part.polygon.tolist()]
        fill = np.clip(np.array(part.colour) + rng.integers(-12, 13, size=3), 0, 255)
        paint.polygon(points, fill=tuple(int(v) for v in fill))
        mark.polygon(points, fill=part.value)
    for path in (image_path, label_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    image.save(image_path, format="JPEG", quality=92)
    label.save(label_path, format="PNG")
    return np.array(label)
