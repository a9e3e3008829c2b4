"""The ADE20K reader on folders generated in the real layout: prompts and masks as the official loader decodes
them (label 0 and 255 never prompted, value v names class v - 1), and bad input that must name the file."""

import hashlib
import json

import numpy as np
import pytest
from PIL import Image
from transformers import XLMRobertaTokenizer

from evf_lightning.data.ade20k import ADE20K_CLASSES, Ade20kReader
from evf_lightning.data.expression_dataset import ExpressionDataset
from evf_lightning.data.synthetic import write_synthetic_tokenizer
from evf_lightning.data.synthetic_ade20k import write_synthetic_ade20k
from evf_lightning.data.transforms import Beit3Preprocess, SamPreprocess


def _official_prompts(label: np.ndarray, classes: list[str]) -> list[str]:
    """utils/ade20k_dataset.py's decoding, step by step, as the oracle."""
    decoded = label.copy()
    decoded[decoded == 0] = 255
    decoded -= 1
    decoded[decoded == 254] = 255
    return ["[semantic] " + classes[c] for c in np.unique(decoded).tolist() if c != 255]


@pytest.fixture
def ade(tmp_path):
    summary = write_synthetic_ade20k(tmp_path, images=4, seed=3, validation_images=2)
    return tmp_path, summary


def _label_path(root, index, split="training"):
    return root / "ade20k" / "annotations" / split / f"ADE_{'train' if split == 'training' else 'val'}_{index:08d}.png"


def test_generated_folder_reads_through_the_real_reader(ade):
    root, summary = ade
    classes = json.loads((root / "ade20k" / "ade20k_classes.json").read_text())
    assert classes == list(ADE20K_CLASSES) and len(classes) == 150 and classes[0] == "wall" and classes[-1] == "flag"
    for split, count in (("training", 4), ("validation", 2)):
        reader = Ade20kReader(root, split)
        assert len(reader) == count
        for index in range(count):
            label_path = _label_path(root, index + 1, split)
            with Image.open(label_path) as file:
                assert file.mode == "L"
                label = np.array(file)
            values = summary.values[label_path.relative_to(root).as_posix()]
            assert 0 in values  # unlabelled pixels are there, and never prompted
            sample = reader.load(index)
            assert sample.texts == _official_prompts(label, classes)
            assert sample.texts == ["[semantic] " + ADE20K_CLASSES[v - 1] for v in values if v != 0]
            assert reader.num_expressions(index) == len(values) - 1 >= 2
            assert sample.image.shape == (*label.shape, 3) and sample.image.dtype == np.uint8
            assert sample.masks.dtype == np.uint8 and sample.masks.shape == (len(values) - 1, *label.shape)
            for mask, value in zip(sample.masks, [v for v in values if v != 0], strict=True):
                np.testing.assert_array_equal(mask, (label == value).astype(np.uint8))
            assert set(np.unique(sample.masks)) == {0, 1}
            assert sample.masks.sum(axis=0).max() == 1  # one class per pixel
            assert f"ade20k/{split} {label_path.stem}" in sample.source
            assert reader.image_path(index) == root / "ade20k" / "images" / split / f"{label_path.stem}.jpg"


def test_chosen_expressions_come_in_the_asked_order(ade):
    root, _ = ade
    reader = Ade20kReader(root)
    every = reader.load(0)
    picked = reader.load(0, [1, 0])
    assert picked.texts == [every.texts[1], every.texts[0]]
    np.testing.assert_array_equal(picked.masks, every.masks[[1, 0]])
    with pytest.raises(IndexError, match=r"ADE_train_00000001 .* has \d expressions; asked for \[9\]"):
        reader.load(0, [9])


def test_stored_255_is_ignored_and_150_is_the_last_class(ade):
    root, _ = ade
    path = _label_path(root, 1)
    label = np.array(Image.open(path))
    label[:3] = 255
    label[-2:] = 150
    Image.fromarray(label, mode="L").save(path)
    texts = Ade20kReader(root).load(0).texts
    assert texts == _official_prompts(label, list(ADE20K_CLASSES))
    assert texts[-1] == "[semantic] flag" and not any(t.endswith("[semantic] ") for t in texts)


def test_an_unlabelled_image_is_an_error_that_skip_mode_skips(ade, tmp_path_factory):
    root, _ = ade
    path = _label_path(root, 2)
    Image.fromarray(np.zeros_like(np.array(Image.open(path))), mode="L").save(path)
    reader = Ade20kReader(root)
    assert reader.num_expressions(1) == 0
    with pytest.raises(ValueError, match=r"ADE_train_00000002.* no labelled pixel"):
        reader.load(1)
    tokenizer_dir = tmp_path_factory.mktemp("tokenizer")
    write_synthetic_tokenizer(tokenizer_dir, ["[semantic] " + name for name in ADE20K_CLASSES])
    data = ExpressionDataset(
        [reader],
        XLMRobertaTokenizer.from_pretrained(str(tokenizer_dir)),
        SamPreprocess(size=64),
        Beit3Preprocess(size=32),
        on_bad_sample="skip",
    )
    items = [data[i] for i in range(len(data))]
    assert [item is None for item in items] == [False, True, False, False] and data.num_skipped == 1
    kept = items[0].texts
    assert len(kept) == min(3, reader.num_expressions(0)) and set(kept) <= set(reader.texts(0))


def test_palette_png_is_named(ade):
    root, _ = ade
    path = _label_path(root, 1)
    Image.open(path).convert("P").save(path)
    with pytest.raises(ValueError, match=rf"{path.name} of ade20k/training has PNG mode 'P' \(palette"):
        Ade20kReader(root).load(0)


def test_value_past_the_class_list_is_named(ade):
    root, _ = ade
    path = _label_path(root, 3)
    label = np.array(Image.open(path))
    label[5, :7] = 151
    Image.fromarray(label, mode="L").save(path)
    reader = Ade20kReader(root)
    with pytest.raises(
        ValueError, match=rf"{path.name} of ade20k/training holds value 151 \(7 pixels\), which names no"
    ):
        reader.num_expressions(2)
    with pytest.raises(ValueError, match=r"names 150 classes, stored as values 1\.\.150; \[0, 255\] mean unlabelled"):
        reader.load(2)


def test_missing_image_is_named_before_training(ade):
    root, _ = ade
    image = root / "ade20k" / "images" / "training" / "ADE_train_00000004.jpg"
    image.unlink()
    with pytest.raises(
        FileNotFoundError, match=rf"1 of 4 label files have no image; .*ADE_train_00000004.png needs {image}"
    ):
        Ade20kReader(root)


def test_label_and_image_of_different_sizes_are_named(ade):
    root, _ = ade
    path = _label_path(root, 1)
    label = Image.open(path)
    label.resize((label.width + 2, label.height)).save(path)
    with pytest.raises(ValueError, match=rf"ADE_train_00000001 .*: the image is {label.height}x{label.width} \(h x w\)"
                       rf" but its label map is {label.height}x{label.width + 2}"):  # fmt: skip
        Ade20kReader(root).load(0)


def test_class_list_and_split_problems_are_named(ade):
    root, _ = ade
    with pytest.raises(ValueError, match=r"unknown ADE20K split 'train'; expected one of \['training', 'validation'\]"):
        Ade20kReader(root, "train")
    classes = root / "ade20k" / "ade20k_classes.json"
    classes.write_text(json.dumps({"0": "wall"}))
    with pytest.raises(ValueError, match=rf"class list {classes} must hold a non-empty JSON list"):
        Ade20kReader(root)
    classes.unlink()
    with pytest.raises(FileNotFoundError, match=rf"class list {classes} does not exist"):
        Ade20kReader(root)


def test_same_seed_writes_the_same_bytes(tmp_path):
    def digest(root):
        return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*.*")}

    first = write_synthetic_ade20k(tmp_path / "a", images=3, seed=7)
    write_synthetic_ade20k(tmp_path / "b", images=3, seed=7)
    write_synthetic_ade20k(tmp_path / "c", images=3, seed=8)
    assert digest(tmp_path / "a") == digest(tmp_path / "b") != digest(tmp_path / "c")
    assert len(first.values) == 4 and len(digest(tmp_path / "a")) == 9  # 4 pairs + the class list
