"""Reader for gRefCOCO: expressions with one, several or no target (datasets.md §3).

`<root>/refer_seg/grefcoco/grefs(<split_by>).p` (read without running code), else `grefs(<split_by>).json` (the
public release), plus `instances.json` (RefCOCO's COCO-style file); images in RefCOCO's COCO train2014 folder.
A ref's `ann_id` is a list: its expression's mask is the OR of those annotations' masks, and `[-1]` marks a
no-target expression, whose mask is all zeros. Items are images with a ref in the split, ascending; expressions
are every sentence of every ref, refs in file order, sentences verbatim. Splits match exactly, as G_REFER's do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evf_lightning.data.coco_json import CocoIndex, CocoPromptReader, Prompt
from evf_lightning.data.refer import image_folder
from evf_lightning.data.safe_pickle import load_refs_pickle

NO_TARGET = -1
_REF_KEYS = ("ref_id", "ann_id", "image_id", "split", "sentences")


def load_grefs(folder: Path, split_by: str) -> tuple[list, Path]:
    """The refs list and the file it came from: the pickle where there is one (G_REFER's order), else the json."""
    pickled, plain = folder / f"grefs({split_by}).p", folder / f"grefs({split_by}).json"
    if pickled.is_file():
        return load_refs_pickle(pickled), pickled
    if not plain.is_file():
        raise FileNotFoundError(f"gRefCOCO refs file: neither {pickled} nor {plain} exists")
    try:
        with plain.open("rb") as file:
            refs = json.load(file)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{plain} is not a readable json file ({error})") from error
    if not isinstance(refs, list):
        raise ValueError(f"{plain} holds a {type(refs).__name__}; a refs file holds a list of ref dicts")
    return refs, plain


def targets(ref: dict[str, Any], annotations: dict[int, Any], where: str) -> tuple[int, ...]:
    """The annotation ids a ref's expressions refer to; () for a no-target ref (`ann_id` [-1])."""
    ann_ids = ref["ann_id"] if isinstance(ref["ann_id"], list) else [ref["ann_id"]]
    if NO_TARGET in ann_ids:
        if len(ann_ids) != 1:
            raise ValueError(f"{where}: ref {ref['ref_id']} mixes the no-target id -1 with targets {ann_ids}")
        return ()
    if not ann_ids:
        raise ValueError(f"{where}: ref {ref['ref_id']} has an empty ann_id list; a no-target ref says [-1]")
    absent = [ann_id for ann_id in ann_ids if ann_id not in annotations]
    if absent:
        raise ValueError(f"{where}: ref {ref['ref_id']} names annotations {absent}, absent from instances.json")
    return tuple(ann_ids)


class GRefCocoReader(CocoPromptReader):
    """One split of gRefCOCO (EVF-SAM trains on `train`; the public release also has `val`)."""

    def __init__(self, root: str | Path, split: str = "train", split_by: str = "unc") -> None:
        root = Path(root)
        folder = root / "refer_seg" / "grefcoco"
        refs, refs_path = load_grefs(folder, split_by)
        for position, ref in enumerate(refs):
            missing = [k for k in _REF_KEYS if k not in ref] if isinstance(ref, dict) else list(_REF_KEYS)
            if missing:
                raise ValueError(f"{refs_path}: entry {position} is not a ref; it lacks {missing}")
        chosen = [ref for ref in refs if ref["split"] == split]
        if not chosen:
            stored = sorted({str(ref["split"]) for ref in refs})
            raise ValueError(f"{refs_path} has no ref in split {split!r}; its refs are in {stored}")
        index = CocoIndex(folder / "instances.json")
        prompts: dict[int, list[Prompt]] = {}
        for ref in chosen:
            if ref["image_id"] not in index.images:
                raise ValueError(
                    f"{refs_path}: ref {ref['ref_id']} names image {ref['image_id']}, absent from {index.path}"
                )
            ann_ids = targets(ref, index.annotations, str(refs_path))
            if not all(isinstance(s, dict) and isinstance(s.get("sent"), str) for s in ref["sentences"]):
                raise ValueError(f"{refs_path}: ref {ref['ref_id']} has a sentence without a 'sent' text")
            found = prompts.setdefault(ref["image_id"], [])
            found += [Prompt(sentence["sent"], ann_ids) for sentence in ref["sentences"]]
        super().__init__(f"grefcoco/{split_by}/{split}", index, root / image_folder("grefcoco"), prompts)
