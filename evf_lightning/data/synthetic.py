"""The embedded default dataset: coloured shapes with referring expressions, in the real refer format.

Every file is what the real datasets ship (COCO-named JPEGs, `instances.json`, Python-2-protocol
`refs(<split_by>).p` pickles, a sentencepiece tokenizer folder), so the quickstart and the tests run the
real readers. Each image holds 3-4 shapes; each object's expressions are the shortest that pick it out
alone. Near-copies of an object are planted on purpose (same shape, colour and size but one; or all
three), so colour, shape, size and relative position (left/right/top/bottom) are each needed somewhere.
Now and then one shape partly covers another; the covered one's annotation is its visible part, as
several polygons, drawn from the same points the JPEG was painted with.
"""

from __future__ import annotations

import io
import itertools
import json
import pickle
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as coco_mask

from evf_lightning.data.refer import SPLIT_BYS, image_folder

if TYPE_CHECKING:
    from evf_lightning.data.synthetic_multitask import FormatSummary

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (40, 160, 50),
    "blue": (35, 80, 220),
    "yellow": (240, 205, 20),
}
SHAPES = ("circle", "square", "triangle")
# Half-width in pixels at the default image size (scaled with it): 18-24 px and 34-44 px across.
SIZES: dict[str, tuple[float, float]] = {"small": (9.0, 12.0), "big": (17.0, 22.0)}
SIZE_WORDS: dict[str, tuple[str, ...]] = {"big": ("big", "large"), "small": ("small", "little")}
# position word -> (axis of the centre, sign): "left" is the smallest x, "bottom" the largest y.
POSITIONS: dict[str, tuple[int, int]] = {"left": (0, -1), "right": (0, 1), "top": (1, -1), "bottom": (1, 1)}
# A position word names the object that beats every rival on its axis by this fraction of the short side.
POSITION_MARGIN = 0.15
CUES = ("size", "colour", "shape")
# Every cue an expression can name, in the order `expression_cues` reports them.
CUE_NAMES = ("colour", "shape", "size", "position")
# The splits each (dataset, split_by) is released with (reference/datasets.md §2).
RELEASED_SPLITS: dict[tuple[str, str], tuple[str, ...]] = {
    ("refcoco", "unc"): ("train", "val", "testA", "testB"),
    ("refcoco", "google"): ("train", "val", "test"),
    ("refcoco+", "unc"): ("train", "val", "testA", "testB"),
    ("refcocog", "umd"): ("train", "val", "test"),
    ("refcocog", "google"): ("train", "val"),
    ("refclef", "unc"): ("train", "val", "testA", "testB", "testC"),
    ("refclef", "berkeley"): ("train", "val", "test"),
}
# COCO-based sets share one image folder, so each gets its own id range (file names hold the id).
_ID_BASE = {"refcoco": 0, "refcoco+": 1_000_000, "refcocog": 2_000_000, "refclef": 0}
_TWIN_PROBABILITY = 0.35  # a new object copies an existing one...
_EXACT_TWIN_PROBABILITY = 0.3  # ...exactly (then only position tells them apart), else with one cue changed
_OVERLAP_PROBABILITY = 0.15  # the last object of an image partly covers an earlier one
_PREFER_ATTRIBUTES = 0.85  # how often an object that attributes alone can single out is described so
_CIRCLE_VERTICES = 28


@dataclass(frozen=True)
class SynthObject:
    """One painted shape: its attributes, its centre (x, y) and half-width in pixels."""

    shape: str
    colour: str
    size: str
    x: float
    y: float
    half: float

    def cue(self, name: str) -> str:
        return {"shape": self.shape, "colour": self.colour, "size": self.size}[name]

    @property
    def reach(self) -> float:
        """Distance from the centre to the farthest vertex."""
        return self.half * {"circle": 1.0, "square": np.sqrt(2.0), "triangle": 2.0 / np.sqrt(3.0)}[self.shape]

    def outline(self) -> np.ndarray:
        """Vertices [K, 2], rounded as they are stored in the annotation and painted in the image."""
        h = self.half
        if self.shape == "circle":
            angles = np.linspace(0.0, 2.0 * np.pi, _CIRCLE_VERTICES, endpoint=False)
            offsets = np.stack([h * np.cos(angles), h * np.sin(angles)], axis=1)
        elif self.shape == "square":
            offsets = np.array([[-h, -h], [h, -h], [h, h], [-h, h]])
        else:  # equilateral, pointing up, centred on its centroid
            height = h * np.sqrt(3.0)
            offsets = np.array([[0.0, -2.0 * height / 3.0], [h, height / 3.0], [-h, height / 3.0]])
        return np.round(offsets + np.array([self.x, self.y]), 2)


@dataclass(frozen=True)
class SynthImage:
    """What the generator knows about one image: its size and objects by annotation id."""

    image_id: int
    height: int
    width: int
    objects: dict[int, SynthObject]

    @property
    def position_margin(self) -> float:
        return POSITION_MARGIN * min(self.height, self.width)


@dataclass(frozen=True)
class Description:
    """Which cues an expression uses: attribute names, plus a position word or None."""

    cues: tuple[str, ...]
    position: str | None


def beats_rivals(target: SynthObject, rivals: Sequence[SynthObject], position: str, margin: float) -> bool:
    """Whether `target` is the `position`-most of itself and `rivals`, by at least `margin` pixels."""
    axis, sign = POSITIONS[position]
    value = sign * (target.x, target.y)[axis]
    return bool(rivals) and all(value - sign * (r.x, r.y)[axis] >= margin for r in rivals)


def shortest_descriptions(
    target: int, objects: Sequence[SynthObject], margin: float, positions: bool = True
) -> list[Description]:
    """All shortest descriptions that fit `objects[target]` and no other object; [] if none does.

    Without `positions`, only attribute cues are tried. Either way, being shortest, every cue in a
    description is necessary: drop any one and it fits two objects.
    """
    goal = objects[target]
    for length in range(1, len(CUES) + 2):
        found = []
        for count in (length, length - 1) if positions else (length,):
            for cues in itertools.combinations(CUES, count) if 0 <= count <= len(CUES) else ():
                fitting = [i for i, o in enumerate(objects) if all(o.cue(c) == goal.cue(c) for c in cues)]
                if count == length and fitting == [target]:
                    found.append(Description(cues, None))
                elif count < length and len(fitting) > 1:
                    rivals = [objects[i] for i in fitting if i != target]
                    found += [Description(cues, word) for word in POSITIONS if beats_rivals(goal, rivals, word, margin)]
        if found:
            return found
    return []


def realise(description: Description, target: SynthObject, rng: np.random.Generator) -> str:
    """One wording of `description`, e.g. "the left red circle" or "the circle that is red"."""
    size = _pick(rng, SIZE_WORDS[target.size]) if "size" in description.cues else ""
    colour = target.colour if "colour" in description.cues else ""
    noun = target.shape if "shape" in description.cues else _pick(rng, ("shape", "one", "object"))
    adjectives = _words(size, colour)
    position = description.position
    if position is None:
        forms = [_words("the", adjectives, noun)]
        forms += [_words(adjectives, noun)] if noun != "one" else []
        forms += (
            [_words("the", size, noun, "that is", colour), _words("the", size, noun, "in", colour)] if colour else []
        )
    else:
        where = f"on the {position}" if position in ("left", "right") else f"at the {position}"
        forms = [
            _words("the", position, adjectives, noun),
            _words("the", adjectives, noun, where),
            _words("the", position + "most", adjectives, noun),
        ]
        forms += [_words(position, adjectives, noun)] if noun != "one" else []
    return forms[int(rng.integers(len(forms)))]


def _words(*parts: str) -> str:
    return " ".join(part for part in parts if part)


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def describe(target: int, objects: Sequence[SynthObject], margin: float, rng: np.random.Generator) -> list[str]:
    """One or two different sentences that each pick out `objects[target]` alone; [] if none can.

    Mostly the shortest description in attributes alone (people name what a thing looks like before
    where it is), else the shortest that may use a position word; each is minimal either way.
    """
    found = shortest_descriptions(target, objects, margin, positions=False)
    if not found or rng.random() >= _PREFER_ATTRIBUTES:
        found = shortest_descriptions(target, objects, margin)
    if not found:
        return []
    sentences = [realise(found[int(rng.integers(len(found)))], objects[target], rng)]
    if rng.random() < 0.5:
        for _ in range(4):  # a paraphrase, or another description as short
            other = realise(found[int(rng.integers(len(found)))], objects[target], rng)
            if other not in sentences:
                sentences.append(other)
                break
    return sentences


def expression_cues(text: str) -> tuple[str, ...]:
    """The cues (of CUE_NAMES, in that order) a generated expression names, read back from its words.

    The grounding check scores the expressions of each set of cues apart, to show which words a model has
    learned: "the leftmost red one" names ("colour", "position").
    """
    words = set(text.lower().split())
    named = {
        "colour": bool(words & set(COLOURS)),
        "shape": bool(words & set(SHAPES)),
        "size": any(word in words for forms in SIZE_WORDS.values() for word in forms),
        "position": any(word in words or word + "most" in words for word in POSITIONS),
    }
    return tuple(cue for cue in CUE_NAMES if named[cue])


def _attributes(rng: np.random.Generator, objects: Sequence[SynthObject]) -> dict[str, str]:
    if objects and rng.random() < _TWIN_PROBABILITY:
        model = objects[int(rng.integers(len(objects)))]
        attributes = {cue: model.cue(cue) for cue in CUES}
        if rng.random() >= _EXACT_TWIN_PROBABILITY:
            cue = _pick(rng, CUES)
            values = {"shape": SHAPES, "colour": tuple(COLOURS), "size": tuple(SIZES)}[cue]
            attributes[cue] = _pick(rng, [v for v in values if v != attributes[cue]])
        return attributes
    return {"shape": _pick(rng, SHAPES), "colour": _pick(rng, tuple(COLOURS)), "size": _pick(rng, tuple(SIZES))}


def _place(
    rng: np.random.Generator,
    attributes: dict[str, str],
    objects: Sequence[SynthObject],
    height: int,
    width: int,
    scale: float,
    overlap: bool,
) -> SynthObject | None:
    """A position clear of `objects` (or, if `overlap`, partly covering exactly one of them)."""
    half = float(rng.uniform(*SIZES[attributes["size"]])) * scale
    reach = SynthObject(**attributes, x=0.0, y=0.0, half=half).reach
    if reach * 2 + 4 > min(height, width):
        return None
    for _ in range(60):
        x = float(rng.uniform(reach + 2, width - reach - 2))
        y = float(rng.uniform(reach + 2, height - reach - 2))
        candidate = SynthObject(**attributes, x=x, y=y, half=half)
        # within the sum of the reaches (plus a 3-pixel gap) two shapes may touch
        reaches = [reach + o.reach for o in objects]
        distances = [float(np.hypot(x - o.x, y - o.y)) for o in objects]
        touching = [i for i, (d, r) in enumerate(zip(distances, reaches, strict=True)) if d < r + 3]
        if not overlap and not touching:
            return candidate
        if overlap and len(touching) == 1 and 0.55 < distances[touching[0]] / reaches[touching[0]] < 0.95:
            if objects[touching[0]].colour == candidate.colour:
                continue  # over its own colour the JPEG would not show where one shape ends
            covered = objects[touching[0]].outline()
            visible = sum(_area(p) for p in _visible_parts(covered, [candidate.outline()]))
            if 0.55 * _area(covered) <= visible <= 0.95 * _area(covered):
                return candidate
    return None


def layout(rng: np.random.Generator, height: int, width: int, scale: float) -> list[SynthObject]:
    """3-4 objects, each of which has at least one unambiguous description.

    The mix is set so that a model of a few hundred thousand parameters learns it in minutes on a CPU
    while every cue (colour, shape, size, position) is still the only way to find some objects.
    """
    margin = POSITION_MARGIN * min(height, width)
    for _ in range(1000):
        count = int(rng.choice([3, 4], p=[0.5, 0.5]))
        overlap = rng.random() < _OVERLAP_PROBABILITY
        objects: list[SynthObject] = []
        for index in range(count):
            attributes = _attributes(rng, objects)
            placed = _place(rng, attributes, objects, height, width, scale, overlap and index == count - 1)
            if placed is None:
                placed = _place(rng, {**attributes, "size": "small"}, objects, height, width, scale, False)
            if placed is None:
                break
            objects.append(placed)
        if len(objects) >= 3 and all(shortest_descriptions(i, objects, margin) for i in range(len(objects))):
            return objects
    raise ValueError(f"cannot fit three describable shapes into a {height}x{width} image; use a larger image_size")


def _area(polygon: np.ndarray) -> float:
    x, y = polygon[:, 0], polygon[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def _clip(polygon: np.ndarray, a: np.ndarray, b: np.ndarray, sign: float) -> np.ndarray:
    """The part of a convex polygon where sign * cross(b - a, p - a) >= 0 (Sutherland-Hodgman)."""
    side = sign * ((b[0] - a[0]) * (polygon[:, 1] - a[1]) - (b[1] - a[1]) * (polygon[:, 0] - a[0]))
    kept = []
    for i in range(len(polygon)):
        j = (i + 1) % len(polygon)
        if side[i] >= 0:
            kept.append(polygon[i])
        if (side[i] >= 0) != (side[j] >= 0):
            kept.append(polygon[i] + side[i] / (side[i] - side[j]) * (polygon[j] - polygon[i]))
    return np.array(kept).reshape(-1, 2)


def _visible_parts(polygon: np.ndarray, covers: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Convex pieces of `polygon` outside every convex polygon in `covers` (all convex)."""
    pieces = [polygon]
    for cover in covers:
        inside = np.sign(np.dot(cover[:, 0], np.roll(cover[:, 1], -1)) - np.dot(cover[:, 1], np.roll(cover[:, 0], -1)))
        remaining: list[np.ndarray] = []
        for piece in pieces:
            rest = piece
            for k in range(len(cover)):
                a, b = cover[k], cover[(k + 1) % len(cover)]
                outside = _clip(rest, a, b, -inside)
                if len(outside) >= 3 and _area(outside) > 0.05:
                    remaining.append(outside)
                rest = _clip(rest, a, b, inside)
                if len(rest) < 3:
                    break
        pieces = remaining
    return pieces


def segments(objects: Sequence[SynthObject]) -> list[list[list[float]]]:
    """Each object's visible part as flat COCO polygons: later objects cover earlier ones."""
    outlines = [o.outline() for o in objects]
    segments = []
    for index, outline in enumerate(outlines):
        covers = [
            c for c, o in zip(outlines[index + 1 :], objects[index + 1 :], strict=True) if _near(objects[index], o)
        ]
        parts = _visible_parts(outline, covers) if covers else [outline]
        segments.append([[round(float(v), 2) for v in part.reshape(-1)] for part in parts])
    return segments


def _near(a: SynthObject, b: SynthObject) -> bool:
    return bool(np.hypot(a.x - b.x, a.y - b.y) < a.reach + b.reach)


def render(objects: Sequence[SynthObject], height: int, width: int, rng: np.random.Generator) -> bytes:
    """JPEG bytes: a noisy plain background and the shapes painted in order from their outlines."""
    base = rng.integers(150, 226) + rng.integers(-12, 13, size=3)
    noise = rng.normal(0.0, 5.0, size=(height, width, 3))
    image = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for obj in objects:
        fill = np.clip(np.array(COLOURS[obj.colour]) + rng.integers(-12, 13, size=3), 0, 255)
        draw.polygon([tuple(p) for p in obj.outline().tolist()], fill=tuple(int(v) for v in fill))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def _file_name(dataset: str, image_id: int) -> str:
    if dataset == "refclef":
        return f"{image_id // 1000:02d}/images/{image_id}.jpg"  # saiapr_tc-12 layout
    return f"COCO_train2014_{image_id:012d}.jpg"


def annotation(dataset: str, polygons: list[list[float]], height: int, width: int) -> dict:
    rle = coco_mask.merge(coco_mask.frPyObjects(polygons, height, width))
    if dataset == "refclef":  # RefCLEF stores a list holding one compressed RLE, counts as str
        segmentation: list = [{"size": [height, width], "counts": rle["counts"].decode("ascii")}]
    else:
        segmentation = polygons
    bbox = [round(float(v), 2) for v in coco_mask.toBbox(rle)]
    return {"segmentation": segmentation, "area": float(coco_mask.area(rle)), "bbox": bbox, "iscrowd": 0}


def _map_split(split: str, released: Sequence[str]) -> str:
    """The split an image gets under another split_by, e.g. testA -> test, test -> val if no test."""
    if split in released:
        return split
    tests = [s for s in released if s.startswith("test")]
    if split.startswith("test") and tests:
        return "test" if "test" in tests else tests[0]
    return "val"


@dataclass(frozen=True)
class SynthSummary:
    """What one `write_synthetic_refer` call wrote; `images` and `expressions` count per split of
    `split_bys[0]`, and `scenes` keeps the generator's own record of every image for checks."""

    root: Path
    dataset: str
    split_bys: tuple[str, ...]
    images: dict[str, int]
    expressions: dict[str, int]
    sentences: tuple[str, ...]
    scenes: dict[int, SynthImage]


def write_synthetic_refer(
    root: str | Path,
    *,
    dataset: str = "refcoco",
    split_by: str | Sequence[str] | None = None,
    num_images: Mapping[str, int] | None = None,
    image_size: tuple[int, int] = (96, 128),
    seed: int = 0,
) -> SynthSummary:
    """Write one refer dataset (JPEGs, instances.json, one refs pickle per split_by) under `root`.

    split_by: one name or several (default: every one the dataset is released with); `num_images`
    gives images per split of the first, e.g. {"train": 100, "val": 10}; each further split_by
    relabels the same refs into its own splits. image_size: (height, width) each image varies around
    by up to 15%. The same arguments write the same bytes.
    """
    if dataset not in SPLIT_BYS:
        raise ValueError(f"unknown refer dataset {dataset!r}; expected one of {list(SPLIT_BYS)}")
    split_bys = (split_by,) if isinstance(split_by, str) else tuple(split_by or SPLIT_BYS[dataset])
    for name in split_bys:
        if name not in SPLIT_BYS[dataset]:
            raise ValueError(f"{dataset} has no split_by {name!r}; expected one of {list(SPLIT_BYS[dataset])}")
    released = RELEASED_SPLITS[(dataset, split_bys[0])]
    num_images = dict(num_images or {split: 4 for split in released})
    for split in num_images:
        if split not in released:
            raise ValueError(f"{dataset}/{split_bys[0]} has no split {split!r}; expected one of {list(released)}")
    root = Path(root)
    images_dir = root / image_folder(dataset)
    ann_dir = root / "refer_seg" / dataset
    ann_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, list(SPLIT_BYS).index(dataset)])
    images, annotations, refs, sentences = [], [], [], []
    scenes: dict[int, SynthImage] = {}
    expressions = dict.fromkeys(num_images, 0)
    image_id, ann_id, sent_id = _ID_BASE[dataset], 0, 0
    for split, count in num_images.items():
        for _ in range(count):
            image_id += 1
            height, width = (round(side * float(rng.uniform(0.85, 1.15))) for side in image_size)
            margin = POSITION_MARGIN * min(height, width)
            objects = layout(rng, height, width, min(image_size) / 96.0)
            file_name = _file_name(dataset, image_id)
            path = images_dir / file_name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(render(objects, height, width, rng))
            images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
            scene: dict[int, SynthObject] = {}
            for index, (obj, polygons) in enumerate(zip(objects, segments(objects), strict=True)):
                ann_id += 1
                scene[ann_id] = obj
                category_id = SHAPES.index(obj.shape) + 1
                annotations.append(
                    {"id": ann_id, "image_id": image_id, "category_id": category_id}
                    | annotation(dataset, polygons, height, width)
                )
                entries = []
                for text in describe(index, objects, margin, rng):
                    sent_id += 1
                    raw = text[0].upper() + text[1:]
                    entries.append({"sent": text, "raw": raw, "tokens": text.split(), "sent_id": sent_id})
                    sentences.append(text)
                refs.append(
                    {"ref_id": len(refs) + 1, "ann_id": ann_id, "image_id": image_id, "category_id": category_id,
                     "split": split, "sentences": entries, "sent_ids": [e["sent_id"] for e in entries],
                     "file_name": f"{Path(file_name).stem}_{ann_id}.jpg"}
                )  # fmt: skip
                expressions[split] += len(entries)
            scenes[image_id] = SynthImage(image_id, height, width, scene)
    categories = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(SHAPES)]
    instances = {"images": images, "annotations": annotations, "categories": categories}
    (ann_dir / "instances.json").write_text(json.dumps(instances))
    for name in split_bys:
        relabelled = [{**ref, "split": _map_split(ref["split"], RELEASED_SPLITS[(dataset, name)])} for ref in refs]
        (ann_dir / f"refs({name}).p").write_bytes(pickle.dumps(relabelled, protocol=2))
    return SynthSummary(root, dataset, split_bys, num_images, expressions, tuple(sentences), scenes)


def write_synthetic_tokenizer(out_dir: str | Path, sentences: Iterable[str], *, vocab_size: int = 160) -> int:
    """Train a word-level sentencepiece model on `sentences`; write it in the official tokenizer layout.

    Word level because the generated language has a few dozen words: a unigram model that small splits
    them into characters, which a tiny text encoder then has to reassemble before it can ground them.

    The files are those the EVF-SAM checkpoints ship (`sentencepiece.bpe.model`, `tokenizer_config.json`,
    `special_tokens_map.json`), with BEiT-3's conventions: sentencepiece unk 0, bos 1, eos 2, no pad,
    which `XLMRobertaTokenizer` maps to <s> 0, <pad> 1, </s> 2, <unk> 3, pieces at their id + 1 and
    <mask> last. `vocab_size` is an upper bound (a small corpus yields fewer pieces). Returns the number
    of token ids the tokenizer can emit, the least `vocab_size` a text encoder needs.
    """
    import sentencepiece as spm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(sentences)),
        model_writer=model,
        model_type="word",
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,  # one thread: the same sentences give the same model bytes
        minloglevel=2,
    )
    (out_dir / "sentencepiece.bpe.model").write_bytes(model.getvalue())
    special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
               "pad_token": "<pad>", "cls_token": "<s>"}  # fmt: skip
    mask = {"content": "<mask>", "lstrip": True, "normalized": False, "rstrip": False, "single_word": False}
    config = {"tokenizer_class": "XLMRobertaTokenizer", "padding_side": "right", "model_max_length": 512,
              **special, "mask_token": mask}  # fmt: skip
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out_dir / "special_tokens_map.json").write_text(json.dumps({**special, "mask_token": mask}, indent=2) + "\n")
    pieces = spm.SentencePieceProcessor(model_proto=model.getvalue()).get_piece_size()
    return pieces + 2  # + <pad> (the fairseq offset) + <mask>


@dataclass(frozen=True)
class SynthDataset:
    """What `write_synthetic_dataset` wrote: one summary per refer dataset and per multitask format, and the
    tokenizer folder."""

    refer: tuple[SynthSummary, ...]
    tokenizer_dir: Path
    token_ids: int
    formats: tuple[FormatSummary, ...] = ()


# Word pieces the tokenizer may hold when multitask prompts join the refer sentences: with <pad> and <mask> they
# fit the 256 token ids of the tiny models (the refer sentences alone stay under the default 160).
MULTITASK_VOCAB_SIZE = 254


def write_synthetic_dataset(
    root: str | Path,
    *,
    datasets: Iterable[str] = ("refcoco",),
    train_images: int = 8,
    val_images: int = 4,
    test_images: int = 4,
    image_size: tuple[int, int] = (96, 128),
    seed: int = 0,
    formats: Iterable[str] = (),
    format_images: int | None = None,
) -> SynthDataset:
    """Refer data for each named dataset (every split_by it is released with), each multitask format of
    `formats` (synthetic_multitask.py; `format_images` training images each, default `train_images`, and
    ADE20K `val_images` validation ones), plus one tokenizer, at `<root>/tokenizer`, trained on all their
    sentences and prompts. Test splits get `test_images` each. Multitask formats keep their writers' own
    image sizes."""
    from evf_lightning.data.synthetic_multitask import write_format  # its writers build on this module

    sizes = {"train": train_images, "val": val_images}
    summaries = tuple(
        write_synthetic_refer(
            root,
            dataset=name,
            num_images={s: sizes.get(s, test_images) for s in RELEASED_SPLITS[(name, SPLIT_BYS[name][0])]},
            image_size=image_size,
            seed=seed,
        )
        for name in datasets
    )
    images = train_images if format_images is None else format_images
    written = tuple(
        write_format(root, kind, images=images, validation_images=val_images, seed=seed) for kind in formats
    )
    sentences = [s for summary in summaries for s in summary.sentences] + [p for f in written for p in f.prompts]
    tokenizer_dir = Path(root) / "tokenizer"
    vocab_size = {"vocab_size": MULTITASK_VOCAB_SIZE} if written else {}
    token_ids = write_synthetic_tokenizer(tokenizer_dir, sentences, **vocab_size)
    return SynthDataset(summaries, tokenizer_dir, token_ids, written)
