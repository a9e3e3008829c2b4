"""The embedded default dataset: coloured shapes with referring expressions, in the real refer format.

Every file is what the real datasets ship (COCO-named JPEGs, `instances.json`, a Python-2-protocol
`refs(<split_by>).p`, a sentencepiece tokenizer folder), so the real readers are what the quickstart and
the tests exercise. Each image holds 3-4 shapes; each object's expression is the shortest that picks it
out alone, so colour, shape, size and relative position are each needed somewhere: duplicates of an
object are planted on purpose, and only their position tells them apart.
"""

from __future__ import annotations

import io
import itertools
import json
import pickle
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as coco_mask

from evf_lightning.data.refer import SPLIT_BYS, image_folder

COLOURS = {"red": (215, 45, 40), "green": (40, 165, 60), "blue": (45, 85, 215), "yellow": (230, 200, 35)}
SHAPES = ("circle", "square", "triangle")
SIZES = {"small": (7.0, 10.0), "big": (14.0, 19.0)}
POSITIONS = {"left": (0, min), "right": (0, max), "top": (1, min), "bottom": (1, max)}
IMAGE_SIZES = ((96, 128), (128, 96), (112, 128), (128, 112), (104, 120))
ATTRIBUTES = ("size", "colour", "shape")
DEFAULT_SPLITS = {"refcoco": ("train", "val", "testA", "testB"), "refcoco+": ("train", "val", "testA", "testB"),
                  "refcocog": ("train", "val", "test"), "refclef": ("train", "val", "testA", "testB")}  # fmt: skip
DUPLICATE_PROBABILITY = 0.35
POSITION_MARGIN = 6.0


@dataclass(frozen=True)
class Shape:
    shape: str
    colour: str
    size: str
    x: float
    y: float
    radius: float

    def polygon(self) -> list[float]:
        """Outline as a flat COCO polygon [x1, y1, x2, y2, ...]."""
        if self.shape == "circle":
            angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        elif self.shape == "square":
            angles = np.array([0.25, 0.75, 1.25, 1.75]) * np.pi
        else:
            angles = np.array([-0.5, 1 / 6, 5 / 6]) * np.pi
        points = np.stack([self.x + self.radius * np.cos(angles), self.y + self.radius * np.sin(angles)], axis=1)
        return [round(float(v), 2) for v in points.reshape(-1)]


def _random_objects(rng: np.random.Generator, height: int, width: int) -> list[Shape]:
    count = int(rng.integers(3, 5))
    objects: list[Shape] = []
    while len(objects) < count:
        if objects and rng.random() < DUPLICATE_PROBABILITY:
            twin = objects[int(rng.integers(len(objects)))]
            attrs = (twin.shape, twin.colour, twin.size)
        else:
            attrs = (str(rng.choice(SHAPES)), str(rng.choice(list(COLOURS))), str(rng.choice(list(SIZES))))
        radius = float(rng.uniform(*SIZES[attrs[2]]))
        for _ in range(50):
            x, y = rng.uniform(radius + 2, width - radius - 2), rng.uniform(radius + 2, height - radius - 2)
            if all(np.hypot(x - o.x, y - o.y) > radius + o.radius + 3 for o in objects):
                objects.append(Shape(*attrs, x=float(x), y=float(y), radius=radius))
                break
        else:
            break
    return objects


def _phrase(target: Shape, attributes: Iterable[str]) -> str:
    chosen = set(attributes)
    words = [target.size if "size" in chosen else "", target.colour if "colour" in chosen else ""]
    words.append(target.shape if "shape" in chosen else "shape")
    return " ".join(w for w in words if w)


def _matches(obj: Shape, target: Shape, attributes: Iterable[str]) -> bool:
    return all(getattr(obj, a) == getattr(target, a) for a in attributes)


def describe(target: Shape, objects: list[Shape], rng: np.random.Generator) -> list[str]:
    """One or two sentences that identify `target` alone among `objects`; [] if none can."""
    for k in (1, 2, 3):
        unique = [s for s in itertools.combinations(ATTRIBUTES, k) if sum(_matches(o, target, s) for o in objects) == 1]
        if unique:
            phrase = _phrase(target, unique[int(rng.integers(len(unique)))])
            templates = [f"{phrase}", f"the {phrase}", f"{phrase} in the picture"]
            break
    else:
        twins = [o for o in objects if _matches(o, target, ATTRIBUTES)]
        options = []
        for word, (axis, pick) in POSITIONS.items():
            coords = sorted((o.x, o.y)[axis] for o in twins)
            extreme = coords[0] if pick is min else coords[-1]
            runner_up = coords[1] if pick is min else coords[-2]
            if (target.x, target.y)[axis] == extreme and abs(extreme - runner_up) >= POSITION_MARGIN:
                options.append(word)
        if not options:
            return []
        word = options[int(rng.integers(len(options)))]
        phrase = _phrase(target, ATTRIBUTES)
        templates = [f"the {word} {phrase}", f"{phrase} on the {word}"]
    count = int(rng.integers(1, 3))
    return [templates[i] for i in sorted(rng.choice(len(templates), size=count, replace=False).tolist())]


def _render(objects: list[Shape], height: int, width: int, rng: np.random.Generator) -> bytes:
    shade = rng.integers(150, 235, size=3)
    pixels = np.clip(shade + rng.normal(0, 6, size=(height, width, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    for obj in objects:
        flat = obj.polygon()
        draw.polygon(list(zip(flat[0::2], flat[1::2], strict=True)), fill=COLOURS[obj.colour])
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _file_name(dataset: str, image_id: int) -> str:
    if dataset == "refclef":
        return f"{image_id // 1000:02d}/images/{image_id}.jpg"
    return f"COCO_train2014_{image_id:012d}.jpg"


def _segmentation(dataset: str, polygon: list[float], height: int, width: int) -> list:
    if dataset != "refclef":
        return [polygon]
    rle = coco_mask.merge(coco_mask.frPyObjects([polygon], height, width))
    return [{"size": [height, width], "counts": rle["counts"].decode()}]


@dataclass(frozen=True)
class SynthSummary:
    root: Path
    dataset: str
    split_by: str
    images: dict[str, int]
    expressions: dict[str, int]
    sentences: list[str]


def write_synthetic_refer(
    root: str | Path,
    *,
    dataset: str = "refcoco",
    split_by: str | None = None,
    num_images: dict[str, int] | None = None,
    seed: int = 0,
) -> SynthSummary:
    """Write one refer dataset (images, instances.json, refs pickle) under `root` in the real layout."""
    split_by = split_by or SPLIT_BYS[dataset][0]
    if split_by not in SPLIT_BYS[dataset]:
        raise ValueError(f"{dataset} has no split_by {split_by!r}; expected one of {SPLIT_BYS[dataset]}")
    num_images = num_images or {split: 4 for split in DEFAULT_SPLITS[dataset]}
    root = Path(root)
    images_dir = root / image_folder(dataset)
    ann_dir = root / "refer_seg" / dataset
    ann_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images, annotations, refs, sentences = [], [], [], []
    counts = {split: 0 for split in num_images}
    image_id = ann_id = sent_id = 0
    for split, n in num_images.items():
        for _ in range(n):
            image_id += 1
            height, width = IMAGE_SIZES[int(rng.integers(len(IMAGE_SIZES)))]
            objects = _random_objects(rng, height, width)
            file_name = _file_name(dataset, image_id)
            path = images_dir / file_name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(_render(objects, height, width, rng))
            images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
            for obj in objects:
                ann_id += 1
                polygon = obj.polygon()
                xs, ys = polygon[0::2], polygon[1::2]
                bbox = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
                annotations.append(
                    {"id": ann_id, "image_id": image_id, "category_id": SHAPES.index(obj.shape) + 1,
                     "segmentation": _segmentation(dataset, polygon, height, width), "bbox": bbox,
                     "area": round(bbox[2] * bbox[3], 2), "iscrowd": 0}
                )  # fmt: skip
                texts = describe(obj, objects, rng)
                if not texts:
                    continue
                entries = []
                for text in texts:
                    sent_id += 1
                    entries.append({"sent": text, "raw": text, "tokens": text.split(), "sent_id": sent_id})
                refs.append(
                    {"ref_id": len(refs) + 1, "ann_id": ann_id, "image_id": image_id,
                     "category_id": SHAPES.index(obj.shape) + 1, "split": split, "sentences": entries,
                     "sent_ids": [e["sent_id"] for e in entries],
                     "file_name": f"{Path(file_name).stem}_{ann_id}.jpg"}
                )  # fmt: skip
                counts[split] += len(texts)
                sentences.extend(texts)
    categories = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(SHAPES)]
    instances = {"images": images, "annotations": annotations, "categories": categories}
    (ann_dir / "instances.json").write_text(json.dumps(instances))
    (ann_dir / f"refs({split_by}).p").write_bytes(pickle.dumps(refs, protocol=2))
    return SynthSummary(root, dataset, split_by, dict(num_images), counts, sentences)


def write_synthetic_tokenizer(out_dir: str | Path, sentences: Iterable[str], vocab_size: int = 64) -> Path:
    """A sentencepiece model of the generated vocabulary, in the official tokenizer layout.

    A word-level model: the generated language has a couple of dozen words, and a unigram model that
    small splits them into characters, which a tiny BEiT-3 then has to reassemble.

    Same special-token ids as BEiT-3's (XLM-R convention: sentencepiece unk 0, bos 1, eos 2, which the
    XLMRobertaTokenizer shifts to <s> 0, <pad> 1, </s> 2, <unk> 3).
    """
    import sentencepiece as spm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(sentences)),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="word",
        character_coverage=1.0,
        hard_vocab_limit=False,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    (out_dir / "sentencepiece.bpe.model").write_bytes(model.getvalue())
    config = {"tokenizer_class": "XLMRobertaTokenizer", "padding_side": "right", "model_max_length": 512,
              "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
              "cls_token": "<s>", "sep_token": "</s>", "mask_token": "<mask>"}  # fmt: skip
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    special = {k: v for k, v in config.items() if k.endswith("_token")}
    (out_dir / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    return out_dir


def write_synthetic_dataset(
    root: str | Path,
    *,
    datasets: Iterable[str] = ("refcoco",),
    train_images: int = 8,
    val_images: int = 4,
    test_images: int = 4,
    seed: int = 0,
) -> list[SynthSummary]:
    """Refer data for each named dataset plus one tokenizer (under `<root>/tokenizer`) trained on them all."""
    sizes = {"train": train_images, "val": val_images}
    summaries = [
        write_synthetic_refer(
            root,
            dataset=name,
            num_images={s: sizes.get(s, test_images) for s in DEFAULT_SPLITS[name]},
            seed=seed + i,
        )
        for i, name in enumerate(datasets)
    ]
    write_synthetic_tokenizer(Path(root) / "tokenizer", [s for summary in summaries for s in summary.sentences])
    return summaries
