"""The refer reader on folders generated in the real format: every dataset and split_by, polygon and
RLE masks, evaluation-style reading, and bad input that must name what is wrong."""

import json
import pickle

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from evf_lightning.data.masks import MaskDecodeError, decode_segmentation
from evf_lightning.data.refer import SPLIT_BYS, ReferDataset
from evf_lightning.data.synthetic import RELEASED_SPLITS, write_synthetic_refer

PAIRS = [(dataset, split_by) for dataset, split_bys in SPLIT_BYS.items() for split_by in split_bys]


def _write(root, **kwargs):
    kwargs.setdefault("num_images", {"train": 2, "val": 2})
    return write_synthetic_refer(root, split_by="unc", **kwargs)


def _instances(root, dataset="refcoco"):
    return json.loads((root / "refer_seg" / dataset / "instances.json").read_text())


def _save_instances(root, instances, dataset="refcoco"):
    (root / "refer_seg" / dataset / "instances.json").write_text(json.dumps(instances))


@pytest.mark.parametrize(("dataset", "split_by"), PAIRS)
def test_every_dataset_and_split_by_reads_through_the_real_reader(tmp_path, dataset, split_by):
    splits = RELEASED_SPLITS[(dataset, split_by)]
    summary = write_synthetic_refer(
        tmp_path, dataset=dataset, split_by=split_by, num_images=dict.fromkeys(splits, 2), seed=1
    )
    annotation = _instances(tmp_path, dataset)["annotations"][0]
    # RefCLEF keeps a list holding one compressed RLE (counts as str), the COCO sets polygon lists
    if dataset == "refclef":
        assert isinstance(annotation["segmentation"][0]["counts"], str)
    else:
        assert isinstance(annotation["segmentation"][0][0], float)
    for split in splits:
        reader = ReferDataset(tmp_path, dataset, split_by, split)
        assert len(reader) == summary.images[split]
        assert sum(reader.num_expressions(i) for i in range(len(reader))) == summary.expressions[split]
        assert list(reader.image_ids) == sorted(reader.image_ids) and len(reader.image_ids) == len(reader)
        for index in range(len(reader)):
            sample = reader.load(index)
            height, width = sample.image.shape[:2]
            assert sample.image.dtype == np.uint8 and sample.image.shape[2] == 3
            assert sample.masks.dtype == np.uint8 and sample.masks.shape == (len(sample.texts), height, width)
            assert set(np.unique(sample.masks)) == {0, 1} and all(m.any() for m in sample.masks)
            assert f"{dataset}/{split_by}/{split} image {reader.image_ids[index]}" in sample.source
            assert reader.image_path(index).is_file()


def test_every_split_by_of_a_dataset_shares_one_instances_file(tmp_path):
    summary = write_synthetic_refer(tmp_path, dataset="refclef", num_images={"train": 2, "testA": 1, "testC": 2})
    assert summary.split_bys == ("unc", "berkeley")
    assert len(ReferDataset(tmp_path, "refclef", "berkeley", "test")) == 3  # testA and testC become test
    assert len(ReferDataset(tmp_path, "refclef", "berkeley", "train")) == 2
    name = _instances(tmp_path, "refclef")["images"][0]["file_name"]
    assert name == "00/images/1.jpg"
    assert (tmp_path / "refer_seg/images/saiapr_tc-12" / name).is_file()


def test_test_splits_match_by_letter_and_by_substring(tmp_path):
    write_synthetic_refer(tmp_path, dataset="refcoco", split_by="unc", num_images={"train": 1, "testA": 2, "testB": 3})
    assert len(ReferDataset(tmp_path, "refcoco", "unc", "testA")) == 2
    assert len(ReferDataset(tmp_path, "refcoco", "unc", "testB")) == 3
    assert len(ReferDataset(tmp_path, "refcoco", "unc", "test")) == 5
    with pytest.raises(ValueError, match=r"no ref in split 'val'; its refs are in \['testA', 'testB', 'train'\]"):
        ReferDataset(tmp_path, "refcoco", "unc", "val")


def test_overlapping_polygons_of_one_annotation_give_a_binary_mask(tmp_path):
    _write(tmp_path, num_images={"val": 1})
    instances = _instances(tmp_path)
    record = instances["images"][0]
    square = [2.0, 2.0, 30.0, 2.0, 30.0, 30.0, 2.0, 30.0]
    shifted = [10.0, 10.0, 40.0, 10.0, 40.0, 40.0, 10.0, 40.0]
    annotation = next(a for a in instances["annotations"] if a["image_id"] == record["id"])
    annotation["segmentation"] = [square, shifted]
    _save_instances(tmp_path, instances)
    official = coco_mask.decode(coco_mask.frPyObjects([square, shifted], record["height"], record["width"])).sum(2)
    assert official.max() == 2  # the official loaders' sum is not a mask

    reader = ReferDataset(tmp_path, "refcoco", "unc", "val")
    index = next(i for i, e in enumerate(reader.expressions(0)) if e.ann_id == annotation["id"])
    mask = reader.load(0, [index]).masks[0]
    assert set(np.unique(mask)) == {0, 1}
    assert np.array_equal(mask, (official > 0).astype(np.uint8))


def test_rle_forms_decode_to_the_same_binary_mask():
    height, width = 20, 30
    left = np.zeros((height, width), np.uint8, order="F")
    left[2:12, 3:15] = 1
    right = np.zeros_like(left)
    right[5:18, 10:25] = 1
    union = left | right
    compressed = [coco_mask.encode(m) for m in (left, right)]
    as_text = [{"size": r["size"], "counts": r["counts"].decode()} for r in compressed]
    assert np.array_equal(decode_segmentation(as_text, height, width, "ann 1"), union)  # RefCLEF's list
    assert np.array_equal(decode_segmentation(compressed, height, width, "ann 1"), union)  # counts as bytes
    single = {"size": [height, width], "counts": as_text[0]["counts"]}
    assert np.array_equal(decode_segmentation(single, height, width, "ann 1"), left)
    flat = left.flatten(order="F").astype(int)
    runs = np.diff(np.flatnonzero(np.diff(np.r_[-1, flat, -1]))).tolist()
    uncompressed = {"size": [height, width], "counts": runs if flat[0] == 0 else [0, *runs]}
    assert np.array_equal(decode_segmentation(uncompressed, height, width, "ann 1"), left)
    for empty in ([], None, [[]], [[1.0, 2.0, 3.0, 4.0]]):  # a polygon of two points has no area
        assert not decode_segmentation(empty, height, width, "ann 1").any()


def test_an_rle_of_another_size_names_the_annotation(tmp_path):
    rle = coco_mask.encode(np.ones((10, 12), np.uint8, order="F"))
    with pytest.raises(MaskDecodeError, match=r"annotation 42 of image 7: its RLE is 10x12 .* says 10x13"):
        decode_segmentation([{"size": [10, 12], "counts": rle["counts"].decode()}], 10, 13, "annotation 42 of image 7")

    write_synthetic_refer(tmp_path, dataset="refclef", split_by="unc", num_images={"val": 1})
    instances = _instances(tmp_path, "refclef")
    instances["annotations"][0]["segmentation"][0]["size"][0] += 1
    _save_instances(tmp_path, instances, "refclef")
    reader = ReferDataset(tmp_path, "refclef", "unc", "val")
    first = instances["annotations"][0]["id"]
    index = next(i for i, e in enumerate(reader.expressions(0)) if e.ann_id == first)
    with pytest.raises(MaskDecodeError, match=rf"annotation {first} of refclef/unc/val image 1 \(.*1\.jpg\)"):
        reader.load(0, [index])


def test_evaluation_reads_every_sentence_of_every_ref_in_order_stripped_and_lower_cased(tmp_path):
    _write(tmp_path, num_images={"val": 3})
    refs_path = tmp_path / "refer_seg" / "refcoco" / "refs(unc).p"
    refs = pickle.loads(refs_path.read_bytes())
    refs[0]["sentences"] += [
        {"sent": "  The RED Thing ", "raw": "x", "tokens": [], "sent_id": 901},
        {"sent": "third sentence", "raw": "x", "tokens": [], "sent_id": 902},
    ]
    refs_path.write_bytes(pickle.dumps(refs, protocol=2))
    reader = ReferDataset(tmp_path, "refcoco", "unc", "val")
    for index in range(len(reader)):
        image_refs = [r for r in refs if r["image_id"] == reader.image_ids[index]]
        expected = [(s["sent"], r["ann_id"]) for r in image_refs for s in r["sentences"]]
        assert [(e.text, e.ann_id) for e in reader.expressions(index)] == expected
        evaluation = reader.load(index, normalise_text=True)
        assert evaluation.texts == [text.strip().lower() for text, _ in expected]
        assert reader.load(index).texts == [text for text, _ in expected]  # training: verbatim
        assert reader.texts(index, normalise_text=True) == evaluation.texts
    first = list(reader.image_ids).index(refs[0]["image_id"])
    count = len(refs[0]["sentences"])  # the image's first ref in pickle order
    assert reader.load(first, normalise_text=True).texts[count - 2 : count] == ["the red thing", "third sentence"]


def test_chosen_expressions_come_back_in_the_order_asked(tmp_path):
    _write(tmp_path, num_images={"val": 1})
    reader = ReferDataset(tmp_path, "refcoco", "unc", "val")
    everything = reader.load(0)
    chosen = reader.load(0, [2, 0, 2])
    assert chosen.texts == [everything.texts[i] for i in (2, 0, 2)]
    assert np.array_equal(chosen.masks, everything.masks[[2, 0, 2]])
    with pytest.raises(IndexError, match=r"image 1 .* has \d+ expressions; asked for \[99\]"):
        reader.load(0, [99])


def test_missing_annotation_files_are_named(tmp_path):
    _write(tmp_path)
    (tmp_path / "refer_seg" / "refcoco" / "refs(unc).p").unlink()
    with pytest.raises(FileNotFoundError, match=r"refer_seg/refcoco/refs\(unc\)\.p of refcoco/unc/val does not"):
        ReferDataset(tmp_path, "refcoco", "unc", "val")
    (tmp_path / "refer_seg" / "refcoco" / "instances.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"refer_seg/refcoco/instances\.json of refcoco/unc/val does not"):
        ReferDataset(tmp_path, "refcoco", "unc", "val")


def test_corrupt_or_missing_images_name_the_file_and_the_sample(tmp_path):
    _write(tmp_path)
    reader = ReferDataset(tmp_path, "refcoco", "unc", "val")
    reader.image_path(0).write_bytes(b"not a jpeg")
    with pytest.raises(OSError, match=rf"{reader.image_path(0).name} of refcoco/unc/val image \d+ .*cannot be read"):
        reader.load(0)
    reader.image_path(1).unlink()
    with pytest.raises(FileNotFoundError, match=rf"{reader.image_path(1).name} of refcoco/unc/val image \d+"):
        reader.load(1)


def test_an_image_of_another_size_than_its_record_names_image_and_annotations(tmp_path):
    _write(tmp_path, num_images={"val": 1})
    instances = _instances(tmp_path)
    instances["images"][0]["height"] += 1
    _save_instances(tmp_path, instances)
    reader = ReferDataset(tmp_path, "refcoco", "unc", "val")
    ann_ids = sorted({e.ann_id for e in reader.expressions(0)})
    with pytest.raises(ValueError, match=rf"image 1 .*instances.json says .*annotations \[{ann_ids[0]}, "):
        reader.load(0)


@pytest.mark.parametrize(
    ("dataset", "split_by", "split", "message"),
    [
        ("refcocoz", "unc", "val", r"'refcocoz'; expected one of \['refcoco', 'refcoco\+', 'refcocog', 'refclef'\]"),
        ("refcoco+", "google", "val", r"refcoco\+ has no split_by 'google'; expected one of \['unc'\]"),
        ("refcocog", "unc", "val", r"'unc'; expected one of \['umd', 'google'\]"),
        ("refcoco", "unc", "valid", r"'valid'; expected one of \['train', 'val', 'test', 'testA'"),
    ],
)
def test_unknown_names_are_named_with_the_allowed_ones(tmp_path, dataset, split_by, split, message):
    with pytest.raises(ValueError, match=message):
        ReferDataset(tmp_path, dataset, split_by, split)


def test_a_refs_entry_that_is_not_a_ref_is_named(tmp_path):
    _write(tmp_path, num_images={"val": 1})
    refs_path = tmp_path / "refer_seg" / "refcoco" / "refs(unc).p"
    refs = pickle.loads(refs_path.read_bytes())
    del refs[1]["sentences"]
    refs_path.write_bytes(pickle.dumps(refs, protocol=2))
    with pytest.raises(ValueError, match=r"refs\(unc\)\.p: entry 1 is not a ref; it lacks \['sentences'\]"):
        ReferDataset(tmp_path, "refcoco", "unc", "val")


def test_a_ref_naming_a_missing_annotation_is_named(tmp_path):
    _write(tmp_path, num_images={"val": 1})
    refs_path = tmp_path / "refer_seg" / "refcoco" / "refs(unc).p"
    refs = pickle.loads(refs_path.read_bytes())
    refs[0]["ann_id"] = 123456
    refs_path.write_bytes(pickle.dumps(refs, protocol=2))
    with pytest.raises(ValueError, match=r"refs\(unc\)\.p: ref 1 names annotation 123456, absent from .*instances"):
        ReferDataset(tmp_path, "refcoco", "unc", "val")


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK"])
def test_grey_rgba_palette_and_cmyk_images_are_read_as_rgb(tmp_path, mode):
    _write(tmp_path, num_images={"val": 1})
    reader = ReferDataset(tmp_path, "refcoco", "unc", "val")
    path = reader.image_path(0)
    original = np.asarray(Image.open(path).convert("RGB"))
    Image.open(path).convert(mode).save(path, format="PNG" if mode != "CMYK" else "JPEG")  # read by content
    image = reader.load(0).image
    assert image.shape == original.shape and image.dtype == np.uint8
    if mode == "RGBA":
        assert np.array_equal(image, original)
