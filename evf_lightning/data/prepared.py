"""Prepared index: any reader's samples written once as an Arrow dataset, read back memory-mapped.

Parsing a large annotation file (Objects365's json, the refer pickles) takes seconds to minutes and a copy
in every worker and rank. `prepare` reads each image of a raw reader once and stores one row per image:
the image path relative to the data root, its size, its prompts (verbatim and normalised), each distinct
mask once as a compressed COCO RLE, and which mask each prompt has. `PreparedReader` serves the same
samples from the memory-mapped Arrow files, which every worker and rank share through the page cache.
The raw reader stays the source of truth: an index is rebuilt from it, never edited.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow.compute as pc
from datasets import Dataset as ArrowDataset
from datasets import Features, List, Value, load_from_disk
from pycocotools import mask as coco_mask

from evf_lightning.data.refer import expression_indices, read_rgb
from evf_lightning.data.sample import ReferringSample

if TYPE_CHECKING:
    from evf_lightning.data.sources import Source

FORMAT = 1
META_FILE = "evf_prepared.json"
# A reader's `source` names its files under the data root; the index stores this mark in place of the root,
# so the sources of a moved root name the files where they are now.
ROOT_MARK = "\x00root\x00"
FEATURES = Features(
    {
        "image_path": Value("string"),
        "height": Value("int32"),
        "width": Value("int32"),
        "source": Value("string"),
        "texts": List(Value("string")),
        "normalised_texts": List(Value("string")),
        "masks": List(Value("binary")),
        "mask_of_text": List(Value("int32")),
    }
)


@dataclass(frozen=True)
class PreparedSummary:
    """What `prepare` wrote: where, and how many images, prompts and distinct masks."""

    path: Path
    images: int
    prompts: int
    masks: int


def encode_masks(masks: np.ndarray) -> tuple[list[bytes], list[int]]:
    """Each distinct mask of [n, H, W] once as compressed COCO RLE counts, and mask i's position among them."""
    distinct: dict[bytes, int] = {}
    order: list[int] = []
    for mask in masks:
        order.append(distinct.setdefault(mask.tobytes(), len(distinct)))
    if not distinct:
        return [], order
    unique = np.stack([np.frombuffer(key, dtype=np.uint8) for key in distinct]).reshape(-1, *masks.shape[1:])
    rles = coco_mask.encode(np.asfortranarray(unique.transpose(1, 2, 0)))
    return [rle["counts"] for rle in rles], order


def _row(reader: Any, index: int, root: Path) -> dict[str, Any]:
    sample: ReferringSample = reader.load(index)
    height, width = sample.image.shape[:2]
    if sample.masks.shape != (len(sample.texts), height, width) or sample.masks.dtype != np.uint8:
        raise ValueError(
            f"{sample.source}: the reader gave masks {sample.masks.dtype} {tuple(sample.masks.shape)} for "
            f"{len(sample.texts)} prompts on a {height}x{width} image"
        )
    if sample.masks.size and sample.masks.max() > 1:
        raise ValueError(f"{sample.source}: the reader gave masks with values above 1")
    path = reader.image_path(index)
    try:
        stored = path.relative_to(root).as_posix()
    except ValueError:  # an image outside the data root keeps its absolute path
        stored = str(path.absolute())
    masks, mask_of_text = encode_masks(sample.masks)
    return {
        "image_path": stored,
        "height": height,
        "width": width,
        "source": _mark_root(sample.source, root),
        "texts": sample.texts,
        "normalised_texts": _normalised_texts(reader, index),
        "masks": masks,
        "mask_of_text": mask_of_text,
    }


def _mark_root(source: str, root: Path) -> str:
    """`source` with each path that starts with `root` (after a space, "(" or at the start) marked instead."""
    if str(root) == ".":  # Path(".") / name is plain `name`: nothing to mark
        return source
    return re.sub(r"(?<![^\s(])" + re.escape(f"{root}{os.sep}"), ROOT_MARK, source)


def _normalised_texts(reader: Any, index: int) -> list[str]:
    """The texts as evaluation reads them; without a `texts` method the reader has to load the image again."""
    texts = getattr(reader, "texts", None)
    if texts is not None:
        return list(texts(index, normalise_text=True))
    return reader.load(index, normalise_text=True).texts


def _rows(indices: list[int], reader: Any, root: str) -> Iterator[dict[str, Any]]:
    for index in indices:
        yield _row(reader, index, Path(root))


def prepare(
    reader: Any, root: str | Path, out: str | Path, *, kind: str, arguments: dict[str, str], workers: int = 1
) -> PreparedSummary:
    """Read every image of `reader` (SampleReader + image_path) once and write the index to `out`.

    `kind` and `arguments` name the source it was read from; `PreparedReader` refuses to serve it for
    another. An existing index at `out` is replaced only once the new one is complete. `workers` > 1
    reads contiguous shards of images in that many processes (rows keep the reader's order).
    """
    root, out = Path(root), Path(out)
    if out.exists() and not (out / META_FILE).is_file():
        raise FileExistsError(f"{out} exists and is not a prepared index; choose another folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".prepare-cache-") as cache:
        dataset = ArrowDataset.from_generator(
            _rows,
            features=FEATURES,
            cache_dir=cache,
            gen_kwargs={"indices": list(range(len(reader))), "reader": reader, "root": str(root)},
            num_proc=workers if workers > 1 else None,
            fingerprint=uuid.uuid4().hex,  # a fresh build every time; no hashing of the reader's tables
        )
        dataset.save_to_disk(str(partial))
        prompts = int(pc.sum(pc.list_value_length(dataset.data.column("texts"))).as_py() or 0)
        masks = int(pc.sum(pc.list_value_length(dataset.data.column("masks"))).as_py() or 0)
        summary = PreparedSummary(out, len(dataset), prompts, masks)
    meta = {"format": FORMAT, "kind": kind, "arguments": arguments, "name": getattr(reader, "name", kind),
            "images": summary.images, "prompts": summary.prompts, "masks": summary.masks}  # fmt: skip
    (partial / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    return summary


class PreparedReader:
    """A `SampleReader` over a prepared index: the same samples as the raw reader it was prepared from.

    Start-up reads three small json files and memory-maps the Arrow files; no annotation file is parsed.
    Images are read from `root` (the data root, which may have moved since preparing). `expect` is the
    config's source: an index prepared from another dataset or split is refused.
    """

    def __init__(self, path: str | Path, root: str | Path, expect: Source | None = None) -> None:
        self.path = Path(path)
        self.root = Path(root)
        meta_path = self.path / META_FILE
        if not meta_path.is_file():
            raise FileNotFoundError(
                f"{self.path} is not a prepared index (it has no {META_FILE}); write it with `evf data prepare CONFIG`"
            )
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(
                f"{self.path} is a prepared index of format {meta.get('format')}; this version reads format "
                f"{FORMAT}: run `evf data prepare` again"
            )
        if expect is not None and (meta["kind"], meta["arguments"]) != (expect.kind, expect.arguments):
            raise ValueError(
                f"{self.path} was prepared from {meta['kind']} {meta['arguments']}, but the config's source "
                f"{expect.name} is {expect.kind} {expect.arguments}"
            )
        self.kind: str = meta["kind"]
        self.name: str = meta["name"]
        self._data = load_from_disk(str(self.path))
        self._counts = pc.list_value_length(self._data.data.column("texts")).to_numpy()

    def __len__(self) -> int:
        return len(self._counts)

    def num_expressions(self, index: int) -> int:
        return int(self._counts[index])

    def image_path(self, index: int) -> Path:
        return self.root / self._data.data.column("image_path")[index].as_py()

    def texts(self, index: int, normalise_text: bool = False) -> list[str]:
        column = "normalised_texts" if normalise_text else "texts"
        return self._data.data.column(column)[index].as_py()

    def load(
        self, index: int, expressions: Sequence[int] | None = None, normalise_text: bool = False
    ) -> ReferringSample:
        """The image, the chosen prompts (all by default) and one binary mask each, as the raw reader gives them."""
        row = self._data[index]
        path = self.root / row["image_path"]
        source = row["source"].replace(ROOT_MARK, "" if str(self.root) == "." else f"{self.root}{os.sep}")
        texts = row["normalised_texts" if normalise_text else "texts"]
        chosen = expression_indices(len(texts), expressions, source)
        image = read_rgb(path, source)
        height, width = row["height"], row["width"]
        if image.shape[:2] != (height, width):
            raise ValueError(
                f"{source}: the file is {image.shape[0]}x{image.shape[1]} (h x w) but the prepared index "
                f"{self.path} says {height}x{width}; the image changed since preparing: run `evf data prepare` again"
            )
        masks = np.zeros((len(chosen), height, width), dtype=np.uint8)
        which = [row["mask_of_text"][i] for i in chosen]
        distinct = sorted(set(which))
        if distinct:
            rles = [{"size": [height, width], "counts": row["masks"][m]} for m in distinct]
            decoded = coco_mask.decode(rles).transpose(2, 0, 1)
            for position, m in enumerate(which):
                masks[position] = decoded[distinct.index(m)]
        return ReferringSample(image=image, texts=[texts[i] for i in chosen], masks=masks, source=source)
