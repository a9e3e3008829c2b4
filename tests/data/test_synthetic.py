"""The embedded default dataset: real formats, deterministic bytes, masks on their painted shapes, and
expressions that each pick out exactly one object with every word of them needed."""

import hashlib
import json
import pickle

import numpy as np
import pytest
from transformers import XLMRobertaTokenizer

from evf_lightning.cli import main
from evf_lightning.data.refer import ReferDataset
from evf_lightning.data.sources import Source
from evf_lightning.data.synth_cli import synth
from evf_lightning.data.synthetic import (
    COLOURS,
    SHAPES,
    SIZE_WORDS,
    SynthSummary,
    expression_cues,
    write_synthetic_dataset,
    write_synthetic_refer,
)

# The language the generator speaks, spelled out here so the checks do not reuse its logic.
SIZE_OF = {word: size for size, words in SIZE_WORDS.items() for word in words}
POSITION_OF = {
    "left": "left", "leftmost": "left", "right": "right", "rightmost": "right",
    "top": "top", "topmost": "top", "bottom": "bottom", "bottommost": "bottom",
}  # fmt: skip
FILLER = {"the", "that", "is", "in", "on", "at", "shape", "one", "object"}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> tuple[SynthSummary, ReferDataset]:
    root = tmp_path_factory.mktemp("shapes")
    summary = write_synthetic_refer(root, dataset="refcoco", split_by="unc", num_images={"train": 160}, seed=5)
    return summary, ReferDataset(root, "refcoco", "unc", "train")


def _read(sentence: str) -> tuple[dict[str, str], str | None]:
    wanted, position = {}, None
    for word in sentence.split():
        if word in COLOURS:
            wanted["colour"] = word
        elif word in SHAPES:
            wanted["shape"] = word
        elif word in SIZE_OF:
            wanted["size"] = SIZE_OF[word]
        elif word in POSITION_OF:
            position = POSITION_OF[word]
        else:
            assert word in FILLER, f"unknown word {word!r} in {sentence!r}"
    return wanted, position


def _referents(wanted: dict[str, str], position: str | None, scene) -> list[int]:
    """Annotation ids of the objects the words fit: "left" = left of every other fit by the margin."""
    fits = {i: o for i, o in scene.objects.items() if all(getattr(o, k) == v for k, v in wanted.items())}
    if position is None:
        return sorted(fits)
    axis, sign = {"left": (0, -1), "right": (0, 1), "top": (1, -1), "bottom": (1, 1)}[position]

    def along(obj):
        return sign * (obj.x, obj.y)[axis]

    return [
        i
        for i, o in fits.items()
        if all(along(o) - along(p) >= scene.position_margin for j, p in fits.items() if j != i)
    ]


def test_every_sentence_fits_exactly_its_object_and_needs_every_cue_it_names(shapes):
    summary, reader = shapes
    needed = dict.fromkeys(("colour", "shape", "size", "position"), 0)
    for index in range(len(reader)):
        scene = summary.scenes[reader.image_ids[index]]
        for expression in reader.expressions(index):
            wanted, position = _read(expression.text)
            assert _referents(wanted, position, scene) == [expression.ann_id], expression.text
            for cue in wanted:
                fewer = {k: v for k, v in wanted.items() if k != cue}
                assert _referents(fewer, position, scene) != [expression.ann_id], (expression.text, cue)
                needed[cue] += 1
            if position is not None:
                assert _referents(wanted, None, scene) != [expression.ann_id], expression.text
                needed["position"] += 1
    assert all(count >= 20 for count in needed.values()), needed


def test_the_cues_read_back_from_a_sentence_are_the_ones_it_was_written_with(shapes):
    _, reader = shapes
    seen = set()
    for index in range(len(reader)):
        for expression in reader.expressions(index):
            wanted, position = _read(expression.text)
            written = tuple(c for c in ("colour", "shape", "size") if c in wanted) + (("position",) if position else ())
            assert expression_cues(expression.text) == written, expression.text
            assert expression_cues(expression.text.upper()) == written
            seen.add(written)
    assert len(seen) >= 8, seen


def test_every_object_has_one_ref_with_one_or_two_sentences(shapes):
    summary, _ = shapes
    refs = pickle.loads((summary.root / "refer_seg/refcoco/refs(unc).p").read_bytes())
    by_ann = {ref["ann_id"]: ref for ref in refs}
    assert sorted(by_ann) == sorted(ann for scene in summary.scenes.values() for ann in scene.objects)
    assert all(1 <= len(ref["sentences"]) <= 2 for ref in refs)
    assert all(len({s["sent"] for s in ref["sentences"]}) == len(ref["sentences"]) for ref in refs)
    assert min(len(scene.objects) for scene in summary.scenes.values()) >= 3
    counts = {len(ref["sentences"]) for ref in refs}
    assert counts == {1, 2}


def test_masks_lie_on_their_painted_shapes_and_covered_shapes_keep_their_visible_part(shapes):
    summary, reader = shapes
    palette = np.array(list(COLOURS.values()), dtype=float)
    instances = json.loads((summary.root / "refer_seg/refcoco/instances.json").read_text())
    parts = {a["id"]: len(a["segmentation"]) for a in instances["annotations"]}
    covered = 0
    for index in range(len(reader)):
        scene = summary.scenes[reader.image_ids[index]]
        sample = reader.load(index)
        masks = {e.ann_id: m for e, m in zip(reader.expressions(index), sample.masks, strict=True)}
        for ann_id, mask in masks.items():
            pixels = sample.image[mask > 0].astype(float)
            distance = np.abs(pixels[:, None, :] - palette[None]).sum(-1)
            own = (distance.argmin(1) == list(COLOURS).index(scene.objects[ann_id].colour)) & (distance.min(1) < 120)
            assert own.mean() > 0.7, (sample.source, ann_id)
            others = [m for other, m in masks.items() if other != ann_id]
            assert max((mask & m).sum() for m in others) <= 0.05 * mask.sum()
        covered += sum(parts[ann_id] > 1 for ann_id in masks)
    assert covered >= 3  # some shapes are partly covered, so their annotation is several polygons


def test_objects_are_big_enough_for_a_128_pixel_model_and_image_sizes_vary(shapes):
    summary, _ = shapes
    instances = json.loads((summary.root / "refer_seg/refcoco/instances.json").read_text())
    widths = [a["bbox"][2] for a in instances["annotations"] if len(a["segmentation"]) == 1]
    assert min(widths) >= 14 and max(widths) <= 44
    sizes = {(image["height"], image["width"]) for image in instances["images"]}
    assert len(sizes) > 20
    assert all(80 <= h <= 112 and 108 <= w <= 148 for h, w in sizes)


def test_files_are_in_the_real_formats(shapes):
    summary, reader = shapes
    folder = summary.root / "refer_seg" / "refcoco"
    raw = (folder / "refs(unc).p").read_bytes()
    assert raw[:2] == b"\x80\x02"  # protocol 2, as Python 2 wrote them
    ref = pickle.loads(raw)[0]
    assert set(ref) == {"ref_id", "ann_id", "image_id", "category_id", "split", "sentences", "sent_ids", "file_name"}
    assert set(ref["sentences"][0]) == {"sent", "raw", "tokens", "sent_id"}
    assert ref["sent_ids"] == [s["sent_id"] for s in ref["sentences"]]
    assert ref["file_name"] == f"COCO_train2014_{ref['image_id']:012d}_{ref['ann_id']}.jpg"
    instances = json.loads((folder / "instances.json").read_text())
    assert [c["name"] for c in instances["categories"]] == list(SHAPES)
    assert set(instances["annotations"][0]) >= {"id", "image_id", "category_id", "segmentation", "bbox", "area"}
    assert instances["images"][0]["file_name"] == "COCO_train2014_000000000001.jpg"
    assert reader.image_path(0).read_bytes()[:3] == b"\xff\xd8\xff"  # a JPEG


def _digest(root):
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return hashlib.sha256(b"".join(p.relative_to(root).as_posix().encode() + p.read_bytes() for p in files)).hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        write_synthetic_dataset(tmp_path / name, train_images=6, val_images=2, test_images=1, seed=seed)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")


def test_every_dataset_in_one_root_keeps_its_own_images(tmp_path):
    written = write_synthetic_dataset(
        tmp_path, datasets=["refcoco", "refcoco+", "refcocog", "refclef"], train_images=2, val_images=2, test_images=1
    )
    assert [s.split_bys for s in written.refer] == [("unc", "google"), ("unc",), ("umd", "google"), ("unc", "berkeley")]
    for summary in written.refer:
        reader = ReferDataset(tmp_path, summary.dataset, summary.split_bys[0], "val")
        for index in range(len(reader)):
            sample = reader.load(index)
            scene = summary.scenes[reader.image_ids[index]]
            assert sample.image.shape[:2] == (scene.height, scene.width), sample.source
    assert (tmp_path / "tokenizer" / "sentencepiece.bpe.model").is_file()


def test_the_cli_function_writes_and_reports(tmp_path, capsys):
    synth(str(tmp_path / "out"), train_images=3, val_images=1, test_images=1)
    printed = capsys.readouterr().out
    assert "refcoco: train 3 images" in printed and "tokenizer" in printed
    assert len(ReferDataset(tmp_path / "out", "refcoco", "unc", "testB")) == 1
    with pytest.raises(SystemExit, match="unknown dataset 'coco'"):
        synth(str(tmp_path / "other"), datasets=["coco"])


def test_the_cli_writes_every_multitask_format_and_each_reads_through_its_real_reader(tmp_path, capsys):
    out = tmp_path / "out"
    formats = ["grefcoco", "ade20k", "objects365", "part_imagenet", "pascal_part", "human_parsing"]
    main(["data", "synth", str(out), "--train_images", "2", "--val_images", "1", "--test_images", "1",
          "--format_images", "3", "--formats", f"[{', '.join(formats)}]"])  # fmt: skip
    printed = capsys.readouterr().out
    tokenizer = XLMRobertaTokenizer.from_pretrained(str(out / "tokenizer"))
    assert len(tokenizer) <= 256  # the tiny models' vocabulary
    for kind in formats:
        reader = Source(kind=kind).raw_reader(out)
        texts = [text for index in range(len(reader)) for text in reader.load(index).texts]
        assert len(reader) == 3 and f"{kind}: 3 images / {len(texts)} prompts\n" in printed
        for index in range(len(reader)):
            sample = reader.load(index)
            assert sample.masks.shape == (len(sample.texts), *sample.image.shape[:2])
            assert set(np.unique(sample.masks)) <= {0, 1}
        semantic = kind in ("ade20k", "part_imagenet", "pascal_part", "human_parsing")
        assert all(text.startswith("[semantic] ") == semantic for text in texts), kind
        for text in texts:  # the tokenizer learnt every prompt: no word falls back to <unk>
            assert tokenizer.unk_token_id not in tokenizer(text)["input_ids"], text
    assert len(Source(kind="ade20k", split="validation").raw_reader(out)) == 1
    assert len(ReferDataset(out, "refcoco", "unc", "train")) == 2
