"""The human-parsing (ATR) reader on folders generated in the real layout: EVF-SAM's names with left and right
on the viewer's side, background as a prompt, masks pixel == value, and bad input that must name the file."""

import hashlib

import numpy as np
import pytest
from PIL import Image

from evf_lightning.data.human_parsing import HUMAN_PARSING_CLASSES, HumanParsingReader
from evf_lightning.data.synthetic_human_parsing import write_synthetic_human_parsing

# utils/humanparsing_dataset.py's table, spelled out here so the check does not reuse the reader's.
OFFICIAL = {
    0: "background", 1: "hat", 2: "hair", 3: "sunglasses", 4: "upper clothes", 5: "skirt", 6: "pants", 7: "dress",
    8: "belt", 9: "right shoe", 10: "left shoe", 11: "face", 12: "right leg", 13: "left leg", 14: "right arm",
    15: "left arm", 16: "bag", 17: "scarf",
}  # fmt: skip


@pytest.fixture
def atr(tmp_path):
    summary = write_synthetic_human_parsing(tmp_path, images=8, seed=2)
    return tmp_path, summary


def _labels(root):
    return sorted((root / "humanparsing" / "SegmentationClassAug").glob("*.png"), key=lambda p: p.name)


def test_generated_folder_reads_through_the_real_reader(atr):
    root, summary = atr
    assert list(HUMAN_PARSING_CLASSES) == [OFFICIAL[v] for v in range(18)]
    reader = HumanParsingReader(root)
    paths = _labels(root)
    assert len(reader) == len(paths) == 8 == len(summary.values)
    for index, path in enumerate(paths):
        with Image.open(path) as file:
            assert file.mode == "L"
            label = np.array(file)
        values = np.unique(label).tolist()
        assert tuple(values) == summary.values[path.relative_to(root).as_posix()]
        sample = reader.load(index)
        assert sample.texts == ["[semantic] " + OFFICIAL[v] for v in values]
        assert sample.texts[0] == "[semantic] background" and reader.num_expressions(index) == len(values)
        assert sample.image.shape == (*label.shape, 3) and label.shape[0] > label.shape[1]  # portrait
        for mask, value in zip(sample.masks, values, strict=True):
            np.testing.assert_array_equal(mask, (label == value).astype(np.uint8))
        assert sample.masks.dtype == np.uint8 and set(np.unique(sample.masks)) == {0, 1}
        np.testing.assert_array_equal(sample.masks.sum(axis=0), np.ones(label.shape))  # background included
        assert f"humanparsing {path.stem} (image " in sample.source
        assert reader.image_path(index) == root / "humanparsing" / "JPEGImages" / f"{path.stem}.jpg"


def test_left_and_right_name_the_viewer_side(atr):
    """The generator paints ATR's meaning (14 "left-arm" = the person's left, on the image's right); the "left"
    prompt must then name the part seen on the left of the picture."""
    root, _ = atr
    reader = HumanParsingReader(root)
    for index in range(len(reader)):
        sample = reader.load(index)
        mean_x = {text: np.nonzero(mask)[1].mean() for text, mask in zip(sample.texts, sample.masks, strict=True)}
        for part in ("arm", "leg", "shoe"):
            left, right = mean_x[f"[semantic] left {part}"], mean_x[f"[semantic] right {part}"]
            assert left < right - 3, (sample.source, part, left, right)


def test_chosen_expressions_come_in_the_asked_order(atr):
    root, _ = atr
    reader = HumanParsingReader(root)
    every = reader.load(3)
    picked = reader.load(3, [2, -1, 0])
    assert picked.texts == [every.texts[2], every.texts[-1], every.texts[0]]
    np.testing.assert_array_equal(picked.masks, every.masks[[2, -1, 0]])


def test_value_past_17_is_named(atr):
    root, _ = atr
    path = _labels(root)[1]
    label = np.array(Image.open(path))
    label[0, :4] = 18
    Image.fromarray(label, mode="L").save(path)
    with pytest.raises(ValueError, match=rf"{path.name} of humanparsing holds value 18 \(4 pixels\), which names no "
                       r"class: the human-parsing label list names 18 classes, stored as values 0\.\.17$"):  # fmt: skip
        HumanParsingReader(root).load(1)


def test_palette_png_is_named(atr):
    root, _ = atr
    path = _labels(root)[0]
    Image.open(path).convert("P").save(path)
    with pytest.raises(ValueError, match=rf"{path} of humanparsing has PNG mode 'P' \(palette: class ids are lost\)"):
        HumanParsingReader(root).load(0)


def test_missing_image_is_named_before_training(atr):
    root, _ = atr
    path = _labels(root)[5]
    image = root / "humanparsing" / "JPEGImages" / f"{path.stem}.jpg"
    image.unlink()
    with pytest.raises(
        FileNotFoundError, match=rf"humanparsing: 1 of 8 label files have no image; e\.g\. {path} needs"
    ):
        HumanParsingReader(root)


def test_label_and_image_of_different_sizes_are_named(atr):
    root, _ = atr
    path = _labels(root)[2]
    label = Image.open(path)
    label.crop((0, 0, label.width, label.height - 1)).save(path)
    with pytest.raises(ValueError, match=rf"{path.stem} .*: the image is {label.height}x{label.width} \(h x w\) but "
                       rf"its label map is {label.height - 1}x{label.width}"):  # fmt: skip
        HumanParsingReader(root).load(2)


def test_missing_folders_are_named(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"humanparsing: the label folder .*SegmentationClassAug does not exist"
    ):
        HumanParsingReader(tmp_path)
    (tmp_path / "humanparsing" / "SegmentationClassAug").mkdir(parents=True)
    (tmp_path / "humanparsing" / "JPEGImages").mkdir()
    with pytest.raises(ValueError, match=r"the label folder .*SegmentationClassAug holds no \.png file"):
        HumanParsingReader(tmp_path)


def test_same_seed_writes_the_same_bytes(tmp_path):
    def digest(root):
        return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*.*")}

    write_synthetic_human_parsing(tmp_path / "a", images=4, seed=1)
    write_synthetic_human_parsing(tmp_path / "b", images=4, seed=1)
    write_synthetic_human_parsing(tmp_path / "c", images=4, seed=2)
    assert digest(tmp_path / "a") == digest(tmp_path / "b") != digest(tmp_path / "c")
    assert len(digest(tmp_path / "a")) == 8
