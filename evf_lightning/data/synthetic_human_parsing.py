"""Synthetic ATR human parsing in the real on-disk layout: JPEGImages and mode "L" SegmentationClassAug PNGs.

One person per portrait image, facing the camera, painted part by part. Values mean what ATR's values mean, so
the person's own left arm (ATR 14 "left-arm") is painted on the image's right: the reader's viewer-side names
("right arm" for 14) can then be checked against where the mask lies. Limbs share the skin colour, so only
their side tells left from right; clothes take a random colour per image; hat, sunglasses, belt, bag and scarf
appear now and then, and the bottoms are pants, a skirt or a dress.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evf_lightning.data.label_map import LabelMapSummary, LabelPart, write_label_pair

# ATR's values (human_parsing.HUMAN_PARSING_CLASSES holds EVF's names for them).
HAT, HAIR, SUNGLASSES, UPPER, SKIRT, PANTS, DRESS, BELT = 1, 2, 3, 4, 5, 6, 7, 8
ATR_LEFT_SHOE, ATR_RIGHT_SHOE, FACE, ATR_LEFT_LEG, ATR_RIGHT_LEG, ATR_LEFT_ARM, ATR_RIGHT_ARM = (
    9,
    10,
    11,
    12,
    13,
    14,
    15,
)
BAG, SCARF = 16, 17
_SKIN, _HAIR, _SHOE, _GLASSES = (224, 172, 140), (70, 45, 30), (40, 40, 45), (15, 15, 20)
# The ATR subset names real files start with.
_SUBSETS = ("2500", "4565", "997", "Multi", "fash", "dataset10k")


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])


def _ellipse(cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    angles = np.linspace(0.0, 2.0 * np.pi, 24, endpoint=False)
    return np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], axis=1)


def person(rng: np.random.Generator, height: int, width: int) -> list[LabelPart]:
    """The parts of one camera-facing person in painting order; the person's left is the image's right."""
    u = height * float(rng.uniform(0.8, 0.95))  # figure height, the unit of every length below
    top = float(rng.uniform(1.0, height - 0.98 * u - 1.0))
    cx = width * float(rng.uniform(0.42, 0.58))
    shoulder = u * float(rng.uniform(0.11, 0.14))

    def clothes() -> tuple[int, int, int]:
        return tuple(int(v) for v in rng.integers(30, 230, size=3))

    def y(fraction: float) -> float:
        return top + fraction * u

    parts = []
    for sign, leg, shoe, arm in (
        (1, ATR_LEFT_LEG, ATR_LEFT_SHOE, ATR_LEFT_ARM),
        (-1, ATR_RIGHT_LEG, ATR_RIGHT_SHOE, ATR_RIGHT_ARM),
    ):
        inner, outer = cx + sign * 0.015 * u, cx + sign * 0.1 * u
        parts.append(LabelPart(leg, _rect(min(inner, outer), y(0.5), max(inner, outer), y(0.93)), _SKIN))
        inner, outer = cx + sign * 0.01 * u, cx + sign * 0.11 * u
        parts.append(LabelPart(shoe, _rect(min(inner, outer), y(0.91), max(inner, outer), y(0.98)), _SHOE))
        inner, outer = cx + sign * shoulder, cx + sign * (shoulder + 0.06 * u)
        parts.append(LabelPart(arm, _rect(min(inner, outer), y(0.21), max(inner, outer), y(0.5)), _SKIN))
    bottoms = int(rng.choice([PANTS, SKIRT, DRESS]))
    if bottoms == DRESS:
        outline = [[cx - shoulder, y(0.2)], [cx + shoulder, y(0.2)], [cx + 0.17 * u, y(0.7)], [cx - 0.17 * u, y(0.7)]]
        parts.append(LabelPart(DRESS, np.array(outline), clothes()))
    else:
        if bottoms == PANTS:
            outline = _rect(cx - 0.11 * u, y(0.47), cx + 0.11 * u, y(0.72))
        else:
            outline = np.array([[cx - 0.11 * u, y(0.47)], [cx + 0.11 * u, y(0.47)], [cx + 0.16 * u, y(0.68)],
                                [cx - 0.16 * u, y(0.68)]])  # fmt: skip
        parts.append(LabelPart(bottoms, outline, clothes()))
        parts.append(LabelPart(UPPER, _rect(cx - shoulder, y(0.2), cx + shoulder, y(0.5)), clothes()))
        if rng.random() < 0.4:
            parts.append(LabelPart(BELT, _rect(cx - 0.11 * u, y(0.46), cx + 0.11 * u, y(0.5)), clothes()))
    if rng.random() < 0.4:
        side = float(rng.choice([-1.0, 1.0]))
        near, far = cx + side * 0.08 * u, cx + side * 0.2 * u
        parts.append(LabelPart(BAG, _rect(min(near, far), y(0.42), max(near, far), y(0.58)), clothes()))
    parts.append(LabelPart(HAIR, _ellipse(cx, y(0.085), 0.085 * u, 0.085 * u), _HAIR))
    parts.append(LabelPart(FACE, _ellipse(cx, y(0.1), 0.065 * u, 0.075 * u), _SKIN))
    if rng.random() < 0.3:
        parts.append(LabelPart(SCARF, _rect(cx - 0.07 * u, y(0.17), cx + 0.07 * u, y(0.22)), clothes()))
    if rng.random() < 0.3:
        parts.append(LabelPart(SUNGLASSES, _rect(cx - 0.055 * u, y(0.08), cx + 0.055 * u, y(0.11)), _GLASSES))
    if rng.random() < 0.35:
        parts.append(LabelPart(HAT, _rect(cx - 0.09 * u, y(0.0), cx + 0.09 * u, y(0.04)), clothes()))
    return parts


def write_synthetic_human_parsing(
    root: str | Path, *, images: int, seed: int, image_size: tuple[int, int] = (96, 64)
) -> LabelMapSummary:
    """Write `images` JPEG/label pairs under `<root>/humanparsing`. image_size: (height, width), portrait,
    each image varying around it by up to 15%. The same arguments write the same bytes."""
    root = Path(root)
    folder = root / "humanparsing"
    rng = np.random.default_rng([seed, 18])
    values: dict[str, tuple[int, ...]] = {}
    for number in range(images):
        height, width = (round(side * float(rng.uniform(0.85, 1.15))) for side in image_size)
        stem = f"{_SUBSETS[number % len(_SUBSETS)]}_{number // len(_SUBSETS) + 1}"
        label_path = folder / "SegmentationClassAug" / f"{stem}.png"
        parts = person(rng, height, width)
        label = write_label_pair(folder / "JPEGImages" / f"{stem}.jpg", label_path, parts, height, width, rng)
        values[label_path.relative_to(root).as_posix()] = tuple(np.unique(label).tolist())
    return LabelMapSummary(root, values)
