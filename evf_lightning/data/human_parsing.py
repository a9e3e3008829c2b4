"""Reader for the ATR human-parsing package EVF-SAM trains on (`humanparsing`, datasets.md §8).

`<root>/humanparsing/SegmentationClassAug/*.png` (8-bit labels 0..17), each with
`<root>/humanparsing/JPEGImages/<stem>.jpg`; no split, every file is training data. The names are EVF-SAM's:
ATR's, with left and right swapped to the viewer's side (ATR's "left-arm" is the person's left, seen on the
image's right, so EVF calls it "right arm", as RefCOCO sentences would), hyphens as spaces, "sunglass" as
"sunglasses". Every value present is a prompt, background included; a value above 17 (official: a KeyError) is
an error naming the file.
"""

from __future__ import annotations

from pathlib import Path

from evf_lightning.data.label_map import LabelCodec, LabelMapReader

# Index = stored value.
HUMAN_PARSING_CLASSES: tuple[str, ...] = (
    "background", "hat", "hair", "sunglasses", "upper clothes", "skirt", "pants", "dress", "belt", "right shoe",
    "left shoe", "face", "right leg", "left leg", "right arm", "left arm", "bag", "scarf",
)  # fmt: skip
CODEC = LabelCodec(HUMAN_PARSING_CLASSES, offset=0, ignored=frozenset(), origin="the human-parsing label list")


class HumanParsingReader(LabelMapReader):
    """Every labelled image of the package, one item per label PNG in name order."""

    def __init__(self, root: str | Path) -> None:
        folder = Path(root) / "humanparsing"
        super().__init__("humanparsing", folder / "SegmentationClassAug", folder / "JPEGImages", CODEC)
