"""Reader for ADE20K SceneParsing (ADEChallengeData2016 renamed `ade20k`): one prompt per class present
(datasets.md §5).

`<root>/ade20k/annotations/<split>/*.png` (8-bit labels, 0 = unlabelled, v = class v - 1 of
`ade20k_classes.json`) with `<root>/ade20k/images/<split>/<stem>.jpg`. The official decoding maps 0 to 255,
subtracts one and maps 254 back to 255, so stored 0 and 255 are both ignored and never prompted; a stored value
past the class list (official: an IndexError mid-training) is an error naming the file. Prompts are
`"[semantic] " + class name`; stuff classes (wall, sky, floor...) are prompts like any other.
"""

from __future__ import annotations

import json
from pathlib import Path

from evf_lightning.data.label_map import LabelCodec, LabelMapReader

SPLITS = ("training", "validation")
CLASSES_FILE = "ade20k_classes.json"
IGNORED_VALUES = frozenset({0, 255})
# ade20k_classes.json as EVF-SAM and LISA ship it: index i names stored value i + 1.
ADE20K_CLASSES: tuple[str, ...] = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path",
    "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase",
    "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light",
    "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver", "airplane",
    "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster",
    "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool",
    "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture",
    "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
    "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)  # fmt: skip


def read_class_names(path: Path) -> tuple[str, ...]:
    """The class list of `ade20k_classes.json`: a JSON list of strings, index i = stored value i + 1."""
    if not path.is_file():
        raise FileNotFoundError(f"class list {path} does not exist; ADE20K needs the 150-name {CLASSES_FILE}")
    try:
        names = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"class list {path} is not a readable json file ({error})") from error
    if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
        raise ValueError(f"class list {path} must hold a non-empty JSON list of class names (strings)")
    if len(names) > 254:  # stored values 1..254; 0 and 255 are ignored
        raise ValueError(f"class list {path} names {len(names)} classes; 8-bit labels hold at most 254")
    return tuple(names)


class Ade20kReader(LabelMapReader):
    """One split of ADE20K, one item per label PNG in name order."""

    def __init__(self, root: str | Path, split: str = "training") -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown ADE20K split {split!r}; expected one of {list(SPLITS)}")
        folder = Path(root) / "ade20k"
        classes_path = folder / CLASSES_FILE
        codec = LabelCodec(read_class_names(classes_path), offset=1, ignored=IGNORED_VALUES, origin=str(classes_path))
        super().__init__(f"ade20k/{split}", folder / "annotations" / split, folder / "images" / split, codec)
