"""The COCO-json readers (Objects365, PartImageNet, Pascal-Part, gRefCOCO) on folders written in the real format:
what the writers meant is what the readers give, masks agree with the official decoding, prompts are spelled as
the official loaders spell them, and bad input is refused with the file and the field named."""

import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO
from torch.nn import functional as F

from evf_lightning.cli import main
from evf_lightning.data.grefcoco import GRefCocoReader
from evf_lightning.data.masks import MaskDecodeError
from evf_lightning.data.objects365 import Objects365Reader
from evf_lightning.data.part_imagenet import PartImageNetReader
from evf_lightning.data.pascal_part import PascalPartReader
from evf_lightning.data.safe_pickle import UnsafePickleError
from evf_lightning.data.synthetic import COLOURS
from evf_lightning.data.synthetic_coco import APPEARANCES
from evf_lightning.data.synthetic_grefcoco import write_synthetic_grefcoco
from evf_lightning.data.synthetic_objects365 import CATEGORY_NAMES, write_synthetic_objects365
from evf_lightning.data.synthetic_part_imagenet import CATEGORIES as PART_IMAGENET_CATEGORIES
from evf_lightning.data.synthetic_part_imagenet import DRAWN, write_synthetic_part_imagenet
from evf_lightning.data.synthetic_pascal_part import CATEGORIES as PASCAL_CATEGORIES
from evf_lightning.data.synthetic_pascal_part import write_synthetic_pascal_part
from evf_lightning.data.transforms import SamPreprocess
from evf_lightning.hub.official_names import name_map
from evf_lightning.models.sam2 import Sam2BackboneConfig, Sam2ImageBackbone

FORMATS = {
    "objects365": (write_synthetic_objects365, Objects365Reader),
    "part_imagenet": (write_synthetic_part_imagenet, PartImageNetReader),
    "pascal_part": (write_synthetic_pascal_part, PascalPartReader),
    "grefcoco": (write_synthetic_grefcoco, GRefCocoReader),
}


def _write(tmp_path, name, images=4, seed=0):
    writer, reader = FORMATS[name]
    summary = writer(tmp_path, images=images, seed=seed)
    return summary, reader(tmp_path)


def _official_mask(coco, ann_id, name):
    """A mask decoded the way the official loader does it (Objects365: RLE `segmentation[0]`; else annToMask)."""
    ann = coco.anns[ann_id]
    if name == "objects365":
        return coco_mask.decode(ann["segmentation"][0])
    return coco.annToMask(ann)


def _edit(path, change):
    content = json.loads(path.read_text())
    change(content)
    path.write_text(json.dumps(content))


# --- written folders through the real readers -------------------------------------------------------------


@pytest.mark.parametrize("name", FORMATS)
def test_the_reader_gives_what_the_writer_wrote_with_official_masks(tmp_path, name):
    summary, reader = _write(tmp_path, name)
    coco = COCO(str(summary.annotation_file))
    assert len(reader) == summary.images == 4
    assert sum(reader.num_expressions(i) for i in range(len(reader))) == summary.expressions
    assert list(reader.image_ids) == sorted(summary.prompts)
    for index, image_id in enumerate(reader.image_ids):
        sample = reader.load(index)
        height, width = sample.image.shape[:2]
        assert sample.image.dtype == np.uint8 and sample.image.shape[2] == 3
        assert sample.texts == list(summary.prompts[image_id]) == reader.texts(index)
        assert sample.masks.dtype == np.uint8 and sample.masks.shape == (len(sample.texts), height, width)
        assert set(np.unique(sample.masks)) <= {0, 1}
        assert f"image {image_id} ({reader.image_path(index)})" in sample.source and reader.image_path(index).is_file()
        for mask, ann_ids in zip(sample.masks, summary.targets[image_id], strict=True):
            official = np.zeros((height, width), dtype=bool)
            for ann_id in ann_ids:
                official |= _official_mask(coco, ann_id, name) > 0
            np.testing.assert_array_equal(mask, official)
            assert mask.any() == bool(ann_ids)  # only a no-target expression has an empty mask
        chosen = reader.load(index, expressions=[-1, 0])
        assert chosen.texts == [sample.texts[-1], sample.texts[0]]
        np.testing.assert_array_equal(chosen.masks, sample.masks[[-1, 0]])


@pytest.mark.parametrize("name", FORMATS)
def test_the_same_seed_writes_the_same_bytes_and_another_seed_other_ones(tmp_path, name):
    first = _write(tmp_path / "a", name, images=3, seed=5)[0]
    again = _write(tmp_path / "b", name, images=3, seed=5)[0]
    other = _write(tmp_path / "c", name, images=3, seed=6)[0]
    assert first.annotation_file.read_bytes() == again.annotation_file.read_bytes()
    assert first.annotation_file.read_bytes() != other.annotation_file.read_bytes()
    for path in (tmp_path / "a").rglob("*"):
        if path.is_file():
            assert path.read_bytes() == (tmp_path / "b" / path.relative_to(tmp_path / "a")).read_bytes(), path


def _colour_of(name, text):
    """The colour the writer paints a category's shapes in (each appearance is its own category)."""
    if name == "objects365":
        key = CATEGORY_NAMES.index(text)
    elif name == "part_imagenet":
        names = {c["id"]: "[semantic] " + c["name"].lower() for c in PART_IMAGENET_CATEGORIES}
        key = [names[i] for i in DRAWN].index(text)
    else:
        key = ["[semantic] " + c["name"].replace(":", " ") for c in PASCAL_CATEGORIES].index(text)
    return np.array(list(COLOURS.values())[key % len(COLOURS)])


@pytest.mark.parametrize("name", ["objects365", "part_imagenet", "pascal_part"])
def test_a_category_always_looks_the_same_in_the_image(tmp_path, name):
    summary, reader = _write(tmp_path, name, images=6, seed=2)
    assert len(PART_IMAGENET_CATEGORIES) == 40 and len(DRAWN) == len(PASCAL_CATEGORIES) == APPEARANCES
    checked = 0
    for index in range(len(reader)):
        sample = reader.load(index)
        for text, mask in zip(sample.texts, sample.masks, strict=True):
            inside = sample.image[mask.astype(bool)].astype(float)
            # painted colours are jittered by up to 12 per channel and JPEG blurs the edges
            assert np.abs(np.median(inside, axis=0) - _colour_of(name, text)).max() < 30, (text, sample.source)
            checked += 1
    assert checked == summary.expressions >= 12


# --- Objects365 -------------------------------------------------------------------------------------------


def _jpeg(path, height, width):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width, 3), 128, dtype=np.uint8)).save(path)


def _rle(height, width, top, left, bottom, right):
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[top:bottom, left:right] = 1
    rle = coco_mask.encode(np.asfortranarray(mask))
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def test_objects365_keeps_once_per_image_categories_and_their_names_verbatim(tmp_path):
    folder = tmp_path / "Object365/raw/Objects365_v1/2019-08-02"
    _jpeg(folder / "train/obj365_train_000000255476.jpg", 48, 64)
    _jpeg(folder / "train/obj365_train_000000000007.jpg", 48, 64)
    boxes = [(1, 1, (0, 0, 10, 10)), (2, 3, (5, 5, 20, 30)), (3, 1, (20, 20, 40, 40)), (4, 2, (30, 0, 48, 20)),
             (5, 1, (0, 40, 10, 64)), (6, 3, (0, 0, 48, 64))]  # fmt: skip
    annotations = [
        {"id": ann_id, "image_id": 255476, "category_id": category, "segmentation": [_rle(48, 64, *box)]}
        for ann_id, category, box in boxes[:5]
    ] + [{"id": 6, "image_id": 7, "category_id": 3, "segmentation": [_rle(48, 64, *boxes[5][2])]}]
    (folder / "o365_res_instances.json").write_text(
        json.dumps({
            "images": [{"id": 255476, "file_name": "obj365_train_000000255476.jpg", "height": 48, "width": 64},
                       {"id": 7, "file_name": "obj365_train_000000000007.jpg", "height": 48, "width": 64},
                       {"id": 9, "file_name": "no_annotations.jpg", "height": 48, "width": 64}],
            "annotations": annotations,
            "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "tissue "}, {"id": 3, "name": "CD"}],
        })
    )  # fmt: skip
    reader = Objects365Reader(tmp_path)
    # person occurs three times in image 255476, so it names no single object there; image 9 has no annotation
    assert reader.image_ids == (7, 255476) and reader.dropped_annotations == 3
    sample = reader.load(1)
    assert sample.texts == ["CD", "tissue "]  # no "[semantic] " prefix, the trailing space kept
    assert sample.masks[0].sum() == 15 * 25 and sample.masks[1][30:48, 0:20].all()
    assert reader.load(1, normalise_text=True).texts == ["cd", "tissue"]
    assert reader.load(0).texts == ["CD"] and reader.load(0).masks.all()


def test_objects365_refuses_an_annotation_whose_segmentation_is_empty(tmp_path):
    summary = write_synthetic_objects365(tmp_path, images=2, seed=0)
    _edit(summary.annotation_file, lambda c: c["annotations"][0].update(segmentation=[]))
    with pytest.raises(ValueError, match=r"o365_res_instances.json: annotation 1 has an empty segmentation"):
        Objects365Reader(tmp_path)


def _v1_boxes_json(tmp_path):
    """Objects365 v1 training annotations as the recipe starts from them: boxes, no masks; image 1 gets a second
    "CD" (so both its CDs go) and a box of no width."""
    summary = write_synthetic_objects365(tmp_path, images=3, seed=0)
    content = json.loads(summary.annotation_file.read_text())
    for ann in content["annotations"]:
        del ann["segmentation"]
    cd = next(ann for ann in content["annotations"] if ann["image_id"] == 1)
    extra = [cd | {"id": 900}, cd | {"id": 901, "category_id": 5, "bbox": [3.0, 4.0, 0.0, 9.0]}]
    content["annotations"] += extra
    v1 = summary.annotation_file.with_name("objects365_train.json")
    v1.write_text(json.dumps(content))
    summary.annotation_file.unlink()
    return summary, v1, cd["id"]


def _sam2_box_masks_by_hand(backbone, image, anns):
    """SAM-2's image predictor step by step: stretch to the square, boxes scaled to it, one mask per box."""
    size = backbone.config.image_size
    height, width = image.shape[:2]
    pixels, _ = SamPreprocess(size=size, resize="stretch")(image)
    x, y, w, h = np.array([ann["bbox"] for ann in anns], dtype=np.float32).T
    boxes = torch.from_numpy(np.stack([x, y, x + w, y + h], axis=1)) * torch.tensor([size / width, size / height] * 2)
    with torch.no_grad():
        features = backbone.encode(pixels[None])
        sparse, _ = backbone.prompt_encoder(input_points=None, input_labels=None, input_boxes=boxes[None],
                                            input_masks=None)  # fmt: skip
        assert sparse.shape == (1, len(anns), 3, backbone.config.prompt_dim)  # two corners and a padding point
        image_index = torch.zeros(len(anns), dtype=torch.long)
        logits = backbone.decoder_outputs(features, image_index, sparse[0], multimask_output=False)[0][:, 0]
    return (F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)[:, 0] > 0).numpy()


def test_objects365_masks_builds_the_json_the_reader_takes_from_boxes_and_a_sam2_checkpoint(tmp_path, capsys):
    """The recipe through `evf data objects365-masks`, with a tiny random SAM-2 saved as a published checkpoint:
    its masks mean nothing, but each must be what that SAM-2 gives for its box."""
    summary, v1, repeated = _v1_boxes_json(tmp_path)
    torch.manual_seed(0)
    backbone = Sam2ImageBackbone(Sam2BackboneConfig.tiny()).eval()
    official = name_map("sam2").to_official({f"image_backbone.{k}": v for k, v in backbone.state_dict().items()})
    torch.save({"model": {k.removeprefix("visual_model."): v for k, v in official.items()}}, tmp_path / "sam2.pt")
    main(["data", "objects365-masks", str(v1), str(tmp_path / "sam2.pt"), "--size", "tiny", "--device", "cpu"])
    printed = capsys.readouterr().out
    boxes = summary.annotations + 2
    assert f"3 images, {boxes} boxes: dropped 2 of repeated categories, 1 empty boxes, 0 empty masks" in printed
    reader = Objects365Reader(tmp_path)
    assert reader.image_ids == (1, 2, 3) and reader.dropped_annotations == 0
    content = json.loads(summary.annotation_file.read_text())
    anns = {ann["id"]: ann for ann in content["annotations"]}
    assert repeated not in anns and 900 not in anns and 901 not in anns and len(anns) == summary.annotations - 1
    for index, image_id in enumerate(reader.image_ids):
        sample = reader.load(index)
        kept = [ann for ann in anns.values() if ann["image_id"] == image_id]
        assert sample.texts == [CATEGORY_NAMES[ann["category_id"] - 1] for ann in kept]
        np.testing.assert_array_equal(sample.masks, _sam2_box_masks_by_hand(backbone, sample.image, kept))
        assert all(0 < mask.sum() < mask.size for mask in sample.masks)  # so the comparison means something
        assert [ann["area"] for ann in kept] == [mask.sum() for mask in sample.masks]
    _edit(v1, lambda c: c["annotations"][0].pop("bbox"))
    with pytest.raises(ValueError, match=r"annotations entry 0 \(id 1\) has no 'bbox' field"):
        main(["data", "objects365-masks", str(v1), str(tmp_path / "sam2.pt"), "--size", "tiny"])


# --- PartImageNet and Pascal-Part -------------------------------------------------------------------------


def test_part_imagenet_merges_parts_skips_empty_annotations_and_lower_cases_names(tmp_path):
    summary = write_synthetic_part_imagenet(tmp_path, images=2, seed=0)
    folder = tmp_path / "PartImageNet"
    _jpeg(folder / "images/train/n02085620_7.JPEG", 40, 56)
    feet = [[[2, 2, 30, 2, 30, 20, 2, 20]], [[20, 10, 50, 10, 50, 36, 20, 36]]]  # overlapping polygons
    extra = [(100, 2, feet[0]), (101, 0, [[40, 0, 55, 0, 55, 8]]), (102, 2, feet[1]), (103, 15, [])]
    _edit(summary.annotation_file, lambda c: (
        c["images"].append({"id": 50, "file_name": "n02085620_7.JPEG", "height": 40, "width": 56}),
        c["annotations"].extend({"id": i, "image_id": 50, "category_id": k, "segmentation": s} for i, k, s in extra),
    ))  # fmt: skip
    reader = PartImageNetReader(tmp_path)
    assert reader.skipped_annotations == 2  # the writer's empty annotation on image 1, and annotation 103
    assert summary.prompts[1] == tuple(reader.texts(0))  # the skipped one gave image 1 no extra prompt
    sample = reader.load(reader.image_ids.index(50))
    assert sample.texts == ["[semantic] quadruped foot", "[semantic] quadruped head"]
    coco = COCO(str(summary.annotation_file))
    first, second = (coco.annToMask(coco.anns[i]) for i in (100, 102))
    assert (first & second).any()  # the overlap is 1 in our mask, where the official sum has 2
    np.testing.assert_array_equal(sample.masks[0], first | second)
    assert set(np.unique(sample.masks)) == {0, 1}


def test_part_imagenet_splits(tmp_path):
    write_synthetic_part_imagenet(tmp_path, images=2, seed=0, split="val")
    assert len(PartImageNetReader(tmp_path, split="val")) == 2
    assert (tmp_path / "PartImageNet/annotations/val/val.json").is_file()
    with pytest.raises(FileNotFoundError, match=r"PartImageNet/annotations/train/train.json does not exist"):
        PartImageNetReader(tmp_path)
    with pytest.raises(ValueError, match=r"unknown PartImageNet split 'training'; expected one of"):
        PartImageNetReader(tmp_path, split="training")


def test_pascal_part_names_parts_as_the_official_loader_and_merges_them_across_objects(tmp_path):
    folder = tmp_path / "vlpart/pascal_part"
    _jpeg(folder / "VOCdevkit/VOC2010/JPEGImages/2008_000002.jpg", 48, 64)
    _jpeg(folder / "VOCdevkit/VOC2010/JPEGImages/2008_000003.jpg", 48, 64)
    legs = [_rle(48, 64, 10, 0, 40, 20), _rle(48, 64, 30, 10, 48, 40)]  # two people's legs, overlapping
    parts = [(0, 2008000002, 80, legs[0]), (1, 2008000002, 78, _rle(48, 64, 0, 40, 20, 64)),
             (2, 2008000002, 80, legs[1]), (3, 2008000003, 1, _rle(48, 64, 5, 5, 40, 60)),
             (4, 2008000003, 84, _rle(48, 64, 40, 0, 48, 8))]  # fmt: skip
    (folder / "train.json").write_text(
        json.dumps({
            "images": [{"id": 2008000002, "file_name": "2008_000002.jpg", "height": 48, "width": 64},
                       {"id": 2008000003, "file_name": "2008_000003.jpg", "height": 48, "width": 64}],
            "annotations": [{"id": i, "image_id": im, "category_id": k, "segmentation": s, "iscrowd": 0}
                            for i, im, k, s in parts],
            "categories": [{"id": 1, "name": "aeroplane:body"}, {"id": 78, "name": "person:arm"},
                           {"id": 80, "name": "person:leg"}, {"id": 84, "name": "potted plant:pot"}],
        })
    )  # fmt: skip
    reader = PascalPartReader(tmp_path)
    assert reader.texts(0) == ["[semantic] person leg", "[semantic] person arm"]
    assert reader.texts(1) == ["[semantic] aeroplane body", "[semantic] potted plant pot"]
    legs_mask = reader.load(0).masks[0]
    decoded = [coco_mask.decode({**rle, "counts": rle["counts"].encode()}) for rle in legs]
    np.testing.assert_array_equal(legs_mask, decoded[0] | decoded[1])
    assert legs_mask.sum() == 30 * 20 + 18 * 30 - 10 * 10  # the overlap counted once


# --- gRefCOCO ---------------------------------------------------------------------------------------------


def _refs(tmp_path):
    return json.loads((tmp_path / "refer_seg/grefcoco/grefs(unc).json").read_text())


def test_grefcoco_multi_target_is_the_union_and_no_target_is_empty(tmp_path):
    _, reader = _write(tmp_path, "grefcoco", images=6, seed=1)
    refs = _refs(tmp_path)
    kinds = {"multi": 0, "none": 0, "single": 0}
    for index, image_id in enumerate(reader.image_ids):
        sample = reader.load(index)
        sentences = [(s["sent"], ref) for ref in refs if ref["image_id"] == image_id for s in ref["sentences"]]
        assert sample.texts == [text for text, _ in sentences]  # verbatim, refs in file order
        singles = {tuple(ref["ann_id"]): m for (_, ref), m in zip(sentences, sample.masks, strict=True)}
        for (_, ref), mask in zip(sentences, sample.masks, strict=True):
            if ref["ann_id"] == [-1]:
                assert ref["no_target"] and not mask.any()
                kinds["none"] += 1
            elif len(ref["ann_id"]) > 1:
                union = np.zeros_like(mask)
                for ann_id in ref["ann_id"]:
                    assert mask[singles[(ann_id,)] > 0].all()  # each target's own mask lies inside
                    union |= singles[(ann_id,)]
                np.testing.assert_array_equal(mask, union)
                kinds["multi"] += 1
            else:
                kinds["single"] += 1
    assert kinds["none"] == 6 and kinds["multi"] >= 3 and kinds["single"] >= 18


def test_grefcoco_reads_the_pickle_first_and_runs_nothing_from_it(tmp_path):
    write_synthetic_grefcoco(tmp_path, images=2, seed=0)
    refs = _refs(tmp_path)
    refs[0]["sentences"][0]["sent"] = "read from the pickle"
    refs[0]["ann_id"] = refs[0]["ann_id"][0]  # a bare id, as RefCOCO stores it, is one target
    pickled = tmp_path / "refer_seg/grefcoco/grefs(unc).p"
    pickled.write_bytes(pickle.dumps(refs, protocol=2))
    reader = GRefCocoReader(tmp_path)
    assert reader.texts(0)[0] == "read from the pickle" and reader.load(0).masks[0].any()
    pickled.write_bytes(pickle.dumps([{"ref_id": 0, "run": print}], protocol=2))
    with pytest.raises(UnsafePickleError, match=r"grefs\(unc\).p: the pickle asks for the global __builtin__.print"):
        GRefCocoReader(tmp_path)


def test_grefcoco_refuses_bad_refs_naming_the_file_and_ref(tmp_path):
    write_synthetic_grefcoco(tmp_path, images=2, seed=0)
    path = tmp_path / "refer_seg/grefcoco/grefs(unc).json"
    with pytest.raises(ValueError, match=r"grefs\(unc\).json has no ref in split 'val'; its refs are in \['train'\]"):
        GRefCocoReader(tmp_path, split="val")
    with pytest.raises(FileNotFoundError, match=r"neither .*grefs\(umd\).p nor .*grefs\(umd\).json exists"):
        GRefCocoReader(tmp_path, split_by="umd")
    cases = [
        (lambda r: r[1].update(ann_id=[-1, 3]), r"ref 1 mixes the no-target id -1 with targets \[-1, 3\]"),
        (lambda r: r[1].update(ann_id=[3, 999]), r"ref 1 names annotations \[999\], absent from instances.json"),
        (lambda r: r[1].update(image_id=42), r"ref 1 names image 42, absent from .*instances.json"),
        (lambda r: r[1]["sentences"][0].pop("sent"), r"ref 1 has a sentence without a 'sent' text"),
        (lambda r: r[2].pop("ann_id"), r"entry 2 is not a ref; it lacks \['ann_id'\]"),
    ]
    original = path.read_text()
    for change, message in cases:
        path.write_text(original)
        _edit(path, change)
        with pytest.raises(ValueError, match=message):
            GRefCocoReader(tmp_path)


# --- bad input shared by the family -----------------------------------------------------------------------


@pytest.mark.parametrize("name", FORMATS)
def test_an_annotation_without_segmentation_is_refused_naming_file_and_annotation(tmp_path, name):
    summary, _ = _write(tmp_path, name, images=2)
    _edit(summary.annotation_file, lambda c: c["annotations"][1].pop("segmentation"))
    ann_id = json.loads(summary.annotation_file.read_text())["annotations"][1]["id"]
    with pytest.raises(ValueError, match=rf"{summary.annotation_file}: annotations entry 1 \(id {ann_id}\) has no "):
        FORMATS[name][1](tmp_path)


@pytest.mark.parametrize("name", FORMATS)
def test_a_category_id_outside_the_category_list_is_refused(tmp_path, name):
    summary, _ = _write(tmp_path, name, images=2)
    _edit(summary.annotation_file, lambda c: c["annotations"][0].update(category_id=999))
    with pytest.raises(ValueError, match=r"annotation \d+ has category_id 999, absent from its categories list"):
        FORMATS[name][1](tmp_path)


@pytest.mark.parametrize("name", FORMATS)
def test_a_missing_image_is_named_before_or_when_it_is_read(tmp_path, name):
    summary, reader = _write(tmp_path, name, images=2)
    reader.image_path(0).unlink()
    with pytest.raises(FileNotFoundError, match=rf"image file {reader.image_path(0)} of .*image {reader.image_ids[0]}"):
        reader.load(0)
    _edit(summary.annotation_file, lambda c: c["images"].pop(0))
    with pytest.raises(ValueError, match=r"annotation \d+ has image_id \d+, absent from its images list"):
        FORMATS[name][1](tmp_path)


@pytest.mark.parametrize("name", ["objects365", "pascal_part"])
def test_an_rle_whose_size_disagrees_with_its_image_is_refused_before_training(tmp_path, name):
    summary, _ = _write(tmp_path, name, images=2)

    def shrink(content):
        segmentation = content["annotations"][0]["segmentation"]
        (segmentation[0] if isinstance(segmentation, list) else segmentation)["size"] = [10, 12]

    _edit(summary.annotation_file, shrink)
    with pytest.raises(ValueError, match=r"annotation \d+ has an RLE of 10x12 \(h x w\) but its image record says"):
        FORMATS[name][1](tmp_path)


@pytest.mark.parametrize("name", FORMATS)
def test_an_image_file_whose_size_disagrees_with_its_record_is_refused_when_read(tmp_path, name):
    _, reader = _write(tmp_path, name, images=2)
    _jpeg(reader.image_path(0), 20, 30)
    with pytest.raises(ValueError, match=r"the file is 20x30 \(h x w\) but .* says \d+x\d+, so its masks would not"):
        reader.load(0)


def test_a_segmentation_that_cannot_be_decoded_names_the_annotation(tmp_path):
    summary, _ = _write(tmp_path, "pascal_part", images=1)
    _edit(summary.annotation_file, lambda c: c["annotations"][0].update(segmentation="not a mask"))
    with pytest.raises(MaskDecodeError, match=r"annotation 0 in .*train.json of pascal_part/train image 2008000001"):
        PascalPartReader(tmp_path).load(0)
