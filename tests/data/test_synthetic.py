"""The embedded default: deterministic, in the real formats, and every expression picks one object."""

import hashlib
import re

import numpy as np
import pytest
import sentencepiece as spm
from transformers import XLMRobertaTokenizer

from evf_lightning.data.refer import ReferDataset
from evf_lightning.data.synthetic import COLOURS, POSITIONS, SHAPES, SIZES, write_synthetic_dataset


def _digest(root):
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return hashlib.sha256(b"".join(p.relative_to(root).as_posix().encode() + p.read_bytes() for p in files)).hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        write_synthetic_dataset(tmp_path / name, train_images=6, val_images=2, test_images=2, seed=seed)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")


def _objects(reader: ReferDataset, image_id: int):
    """Each annotation's shape, colour, size and centre, read back from the written files."""
    sample_index = reader.image_ids.index(image_id)
    image = reader.load(sample_index).image.astype(float)
    objects = {}
    for ann in reader.annotations.values():
        if ann["image_id"] != image_id:
            continue
        mask = reader.load(sample_index, [0]).masks[0] * 0  # size template
        from evf_lightning.data.masks import decode_segmentation

        mask = decode_segmentation(ann["segmentation"], *mask.shape, "test") > 0
        colour = min(COLOURS, key=lambda c: np.abs(image[mask].mean(0) - COLOURS[c]).sum())
        x, y, w, h = ann["bbox"]
        radius = w / {"circle": 2.0, "square": 2**0.5, "triangle": 3**0.5}[SHAPES[ann["category_id"] - 1]]
        size = "big" if radius > (SIZES["small"][1] + SIZES["big"][0]) / 2 else "small"
        objects[ann["id"]] = {"shape": SHAPES[ann["category_id"] - 1], "colour": colour, "size": size,
                              "centre": (x + w / 2, y + h / 2)}  # fmt: skip
    return objects


def _resolve(sentence: str, objects: dict) -> list[int]:
    words = set(re.findall(r"[a-z]+", sentence))
    keep = [
        k for k, o in objects.items()
        if all(o[attr] in words or not (words & set(values)) for attr, values in
               (("shape", SHAPES), ("colour", COLOURS), ("size", SIZES)))
    ]  # fmt: skip
    for word, (axis, pick) in POSITIONS.items():
        if word in words:
            best = pick(objects[k]["centre"][axis] for k in keep)
            keep = [k for k in keep if objects[k]["centre"][axis] == best]
    return keep


def test_every_expression_identifies_exactly_its_object_and_all_cues_are_needed(synth_root):
    reader = ReferDataset(synth_root, "refcoco", "unc", "train")
    used = {"colour": 0, "shape": 0, "size": 0, "position": 0}
    for image_id in reader.image_ids[:60]:
        objects = _objects(reader, image_id)
        assert len(objects) >= 3
        for expression in reader.expressions[image_id]:
            assert _resolve(expression.text, objects) == [expression.ann_id], expression.text
            words = set(expression.text.split())
            used["colour"] += bool(words & set(COLOURS))
            used["shape"] += bool(words & set(SHAPES))
            used["size"] += bool(words & set(SIZES))
            used["position"] += bool(words & set(POSITIONS))
    assert all(count > 0 for count in used.values()), used


def test_tokenizer_folder_loads_offline_with_beit3_special_ids(synth_root):
    tokenizer = XLMRobertaTokenizer.from_pretrained(str(synth_root / "tokenizer"))
    assert (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    processor = spm.SentencePieceProcessor(model_file=str(synth_root / "tokenizer" / "sentencepiece.bpe.model"))
    reader = ReferDataset(synth_root, "refcoco", "unc", "val")
    for text in reader.texts(0) + reader.texts(1):
        ids = tokenizer(text)["input_ids"]
        # XLM-R's fairseq convention: sentencepiece ids shifted by one, wrapped in <s> ... </s>
        assert ids == [0] + [i + 1 for i in processor.encode(text)] + [2]
        assert tokenizer.decode(ids, skip_special_tokens=True) == text


@pytest.mark.parametrize("dataset", ["refcoco+", "refcocog", "refclef"])
def test_other_dataset_names_are_written_in_their_layout(tmp_path, dataset):
    (summary,) = write_synthetic_dataset(tmp_path, datasets=[dataset], train_images=3, val_images=2, test_images=2)
    assert ReferDataset(tmp_path, dataset, summary.split_by, "val").load(0).masks.any()
