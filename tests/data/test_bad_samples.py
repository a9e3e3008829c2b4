"""Bad multitask input met while training reads: raise mode names the file and the value; skip mode
(data.on_bad_sample=skip) drops exactly that sample, counts it, and reads the others. Input that can be checked
before training (a json without segmentation, a label PNG without its image) is refused when the source opens."""

import json
import re

import numpy as np
import pytest
from PIL import Image
from transformers import XLMRobertaTokenizer

from evf_lightning.data.batch import collate_expressions
from evf_lightning.data.expression_dataset import ExpressionDataset
from evf_lightning.data.sources import Source
from evf_lightning.data.synthetic import write_synthetic_dataset
from evf_lightning.data.transforms import Beit3Preprocess, SamPreprocess

IMAGES = 3
BAD = 1  # the index of the sample each case breaks


def _palette(reader):
    path = reader.label_path(BAD)
    Image.open(path).convert("P").save(path)
    return rf"label file {re.escape(str(path))} of {reader.name} has PNG mode 'P' \(palette: class ids are lost\)"


def _value_past_the_list(value):
    def change(reader):
        path = reader.label_path(BAD)
        label = np.array(Image.open(path))
        label[0, :3] = value
        Image.fromarray(label, mode="L").save(path)
        return rf"{re.escape(str(path))} of {reader.name} holds value {value} \(3 pixels\), which names no class"

    return change


def _missing_image(reader):
    path = reader.image_path(BAD)
    path.unlink()
    return rf"image file {re.escape(str(path))} of {reader.name}"


# (format, what breaks sample BAD once its source is open)
CASES = {
    "ade20k palette png": ("ade20k", _palette),
    "human parsing palette png": ("human_parsing", _palette),
    "ade20k class 151": ("ade20k", _value_past_the_list(151)),
    "human parsing class 18": ("human_parsing", _value_past_the_list(18)),
    "objects365 missing image": ("objects365", _missing_image),
    "part_imagenet missing image": ("part_imagenet", _missing_image),
    "pascal_part missing image": ("pascal_part", _missing_image),
}


def _dataset(root, reader, on_bad_sample):
    return ExpressionDataset(
        [reader],
        XLMRobertaTokenizer.from_pretrained(str(root / "tokenizer")),
        SamPreprocess(size=64),
        Beit3Preprocess(size=32),
        expressions_per_image=3,
        on_bad_sample=on_bad_sample,
    )


@pytest.mark.parametrize("case", CASES)
def test_a_bad_sample_is_named_in_raise_mode_and_skipped_and_counted_in_skip_mode(tmp_path, case):
    kind, breaks = CASES[case]
    write_synthetic_dataset(tmp_path, datasets=[], formats=[kind], format_images=IMAGES, val_images=0)
    reader = Source(kind=kind).raw_reader(tmp_path)
    message = breaks(reader)
    with pytest.raises((OSError, ValueError), match=message):
        _dataset(tmp_path, reader, "raise")[BAD]
    data = _dataset(tmp_path, reader, "skip")
    items = [data[index] for index in range(IMAGES)]
    assert [item is None for item in items] == [index == BAD for index in range(IMAGES)]
    assert data.num_skipped == 1
    batch = collate_expressions(items)
    assert batch.num_skipped == 1 and batch.num_images == IMAGES - 1


@pytest.mark.parametrize("kind", ["objects365", "part_imagenet", "pascal_part", "grefcoco"])
def test_a_json_without_segmentation_is_refused_when_the_source_opens(tmp_path, kind):
    written = write_synthetic_dataset(tmp_path, datasets=[], formats=[kind], format_images=2, val_images=0)
    path = written.formats[0].annotations
    content = json.loads(path.read_text())
    first = content["annotations"][0]
    del first["segmentation"]
    path.write_text(json.dumps(content))
    message = rf"{re.escape(str(path))}: annotations entry 0 \(id {first['id']}\) has no 'segmentation' field"
    with pytest.raises(ValueError, match=message):
        Source(kind=kind).raw_reader(tmp_path)


@pytest.mark.parametrize("kind", ["ade20k", "human_parsing"])
def test_a_label_png_without_its_image_is_refused_when_the_source_opens(tmp_path, kind):
    write_synthetic_dataset(tmp_path, datasets=[], formats=[kind], format_images=2, val_images=0)
    reader = Source(kind=kind).raw_reader(tmp_path)
    image, label = reader.image_path(0), reader.label_path(0)
    image.unlink()
    message = rf"1 of 2 label files have no image; e.g. {re.escape(str(label))} needs {re.escape(str(image))}"
    with pytest.raises(FileNotFoundError, match=message):
        Source(kind=kind).raw_reader(tmp_path)
