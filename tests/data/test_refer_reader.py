"""The refer reader on generated folders in the real format: polygons, RLE, every splitBy, bad input."""

import json
import pickle
import shutil

import numpy as np
import pytest

from evf_lightning.data.refer import SPLIT_BYS, ReferDataset
from evf_lightning.data.synthetic import DEFAULT_SPLITS, write_synthetic_refer

PAIRS = [(dataset, split_by) for dataset, split_bys in SPLIT_BYS.items() for split_by in split_bys]


@pytest.mark.parametrize(("dataset", "split_by"), PAIRS)
def test_every_dataset_and_split_by_reads_through_the_real_reader(tmp_path, dataset, split_by):
    summary = write_synthetic_refer(tmp_path, dataset=dataset, split_by=split_by, seed=1)
    for split in DEFAULT_SPLITS[dataset]:
        reader = ReferDataset(tmp_path, dataset, split_by, split)
        assert len(reader) == summary.images[split]
        assert sum(reader.num_expressions(i) for i in range(len(reader))) == summary.expressions[split]
        sample = reader.load(0)
        h, w = sample.image.shape[:2]
        assert sample.image.dtype == np.uint8 and sample.image.shape[2] == 3
        assert sample.masks.shape == (reader.num_expressions(0), h, w)
        assert set(np.unique(sample.masks)) <= {0, 1} and sample.masks.sum() > 0
    segmentation = json.loads((tmp_path / "refer_seg" / dataset / "instances.json").read_text())["annotations"][0][
        "segmentation"
    ]
    assert isinstance(segmentation[0], dict if dataset == "refclef" else list)  # RLE for RefCLEF, polygons otherwise


def test_test_split_matches_by_substring_and_letters(tmp_path):
    write_synthetic_refer(tmp_path, dataset="refcoco", num_images={"train": 2, "testA": 2, "testB": 3})
    assert len(ReferDataset(tmp_path, "refcoco", "unc", "testA")) == 2
    assert len(ReferDataset(tmp_path, "refcoco", "unc", "testB")) == 3
    assert len(ReferDataset(tmp_path, "refcoco", "unc", "test")) == 5


def test_overlapping_polygons_and_rle_parts_give_a_binary_mask(tmp_path):
    write_synthetic_refer(tmp_path, dataset="refcoco", num_images={"val": 1})
    path = tmp_path / "refer_seg" / "refcoco" / "instances.json"
    instances = json.loads(path.read_text())
    record = instances["images"][0]
    square = [2.0, 2.0, 30.0, 2.0, 30.0, 30.0, 2.0, 30.0]
    shifted = [10.0, 10.0, 40.0, 10.0, 40.0, 40.0, 10.0, 40.0]  # overlaps the first: the official sum gives 2
    ann = next(a for a in instances["annotations"] if a["image_id"] == record["id"])
    ann["segmentation"] = [square, shifted]
    path.write_text(json.dumps(instances))
    reader = ReferDataset(tmp_path, "refcoco", "unc", "val")
    index = next(i for i, e in enumerate(reader.expressions[record["id"]]) if e.ann_id == ann["id"])
    mask = reader.load(0, [index]).masks[0]
    assert set(np.unique(mask)) == {0, 1}
    assert mask[20, 20] == 1 and mask[5, 5] == 1 and mask[35, 35] == 1


def test_evaluation_reads_every_sentence_lower_cased_and_stripped(tmp_path):
    write_synthetic_refer(tmp_path, dataset="refcoco", num_images={"val": 2})
    refs_path = tmp_path / "refer_seg" / "refcoco" / "refs(unc).p"
    refs = pickle.loads(refs_path.read_bytes())
    refs[0]["sentences"].append({"sent": "  The RED Thing ", "raw": "x", "tokens": [], "sent_id": 999})
    refs_path.write_bytes(pickle.dumps(refs, protocol=2))
    reader = ReferDataset(tmp_path, "refcoco", "unc", "val")
    image = reader.image_ids.index(refs[0]["image_id"])
    expected = [s["sent"] for r in refs if r["image_id"] == refs[0]["image_id"] for s in r["sentences"]]
    assert reader.texts(image) == expected
    sample = reader.load(image, normalise_text=True)
    assert "the red thing" in sample.texts and len(sample.texts) == len(expected)


def test_missing_annotation_file_names_the_file(tmp_path):
    write_synthetic_refer(tmp_path, dataset="refcoco", num_images={"val": 1})
    (tmp_path / "refer_seg" / "refcoco" / "instances.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"refcoco/instances\.json"):
        ReferDataset(tmp_path, "refcoco", "unc", "val")


def test_corrupt_image_names_the_file_and_sample(tmp_path):
    write_synthetic_refer(tmp_path, dataset="refcoco", num_images={"val": 1})
    reader = ReferDataset(tmp_path, "refcoco", "unc", "val")
    name = reader.images[reader.image_ids[0]]["file_name"]
    (tmp_path / "refer_seg/images/mscoco/images/train2014" / name).write_bytes(b"not a jpeg")
    with pytest.raises(OSError, match=rf"{name}.*cannot be read"):
        reader.load(0)


def test_image_size_disagreeing_with_instances_is_an_error(tmp_path):
    write_synthetic_refer(tmp_path, dataset="refcoco", num_images={"val": 1})
    path = tmp_path / "refer_seg" / "refcoco" / "instances.json"
    instances = json.loads(path.read_text())
    instances["images"][0]["height"] += 1
    path.write_text(json.dumps(instances))
    with pytest.raises(ValueError, match=r"instances\.json says"):
        ReferDataset(tmp_path, "refcoco", "unc", "val").load(0)


@pytest.mark.parametrize(
    ("dataset", "split_by", "split", "bad"),
    [
        ("refcocoz", "unc", "val", "refcocoz"),
        ("refcoco+", "google", "val", "google"),
        ("refcoco", "unc", "valid", "valid"),
    ],
)
def test_unknown_names_are_named(tmp_path, dataset, split_by, split, bad):
    with pytest.raises(ValueError, match=bad):
        ReferDataset(tmp_path, dataset, split_by, split)


def test_ref_naming_a_missing_annotation_is_named(tmp_path):
    write_synthetic_refer(tmp_path, dataset="refcoco", num_images={"val": 1})
    refs_path = tmp_path / "refer_seg" / "refcoco" / "refs(unc).p"
    refs = pickle.loads(refs_path.read_bytes())
    refs[0]["ann_id"] = 123456
    refs_path.write_bytes(pickle.dumps(refs, protocol=2))
    with pytest.raises(ValueError, match="annotation 123456"):
        ReferDataset(tmp_path, "refcoco", "unc", "val")


def test_grey_and_rgba_images_are_converted_to_rgb(tmp_path):
    from PIL import Image

    write_synthetic_refer(tmp_path, dataset="refcoco", num_images={"val": 2})
    reader = ReferDataset(tmp_path, "refcoco", "unc", "val")
    folder = tmp_path / "refer_seg/images/mscoco/images/train2014"
    for index, mode in enumerate(("L", "RGBA")):
        path = folder / reader.images[reader.image_ids[index]]["file_name"]
        converted = Image.open(path).convert(mode)
        shutil.copy(path, path.with_suffix(".bak"))
        converted.save(path, format="PNG")  # a PNG behind a .jpg name: PIL reads by content
        assert reader.load(index).image.shape[2] == 3
