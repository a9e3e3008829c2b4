"""The prepared Arrow index serves exactly the raw reader's samples, without opening the annotation files."""

from __future__ import annotations

import inspect
import shutil
from pathlib import Path

import numpy as np
import pytest

from evf_lightning.data.prepared import META_FILE, PreparedReader, prepare
from evf_lightning.data.sources import READERS, Source
from evf_lightning.data.synthetic_multitask import WRITERS

TRAIN = Source(dataset="refcoco", split_by="unc", split="train")


def assert_same_samples(raw, prepared) -> None:
    """Every image: all prompts verbatim, a chosen subset (negative index included), and normalised texts."""
    assert len(prepared) == len(raw) > 0
    for index in range(len(raw)):
        count = raw.num_expressions(index)
        assert prepared.num_expressions(index) == count
        assert prepared.image_path(index) == raw.image_path(index)
        chosen = [count - 1, 0] if count > 1 else [0]
        for expressions, normalise in ((None, False), (chosen, False), ([-1], True)):
            a = raw.load(index, expressions, normalise_text=normalise)
            b = prepared.load(index, expressions, normalise_text=normalise)
            assert b.texts == a.texts
            assert b.source == a.source
            assert b.masks.dtype == a.masks.dtype == np.uint8
            np.testing.assert_array_equal(b.masks, a.masks)
            np.testing.assert_array_equal(b.image, a.image)


def copy_refcoco(synth_root: Path, root: Path) -> Path:
    """A root of our own: the annotation files copied (the test deletes them), the images linked."""
    (root / "refer_seg").mkdir(parents=True)
    shutil.copytree(synth_root / "refer_seg/refcoco", root / "refer_seg/refcoco")
    (root / "refer_seg/images").symlink_to(synth_root / "refer_seg/images")
    return root


def test_prepared_refer_gives_the_raw_samples(synth_root, tmp_path):
    raw = TRAIN.raw_reader(synth_root)
    summary = prepare(raw, synth_root, tmp_path / "index", kind=TRAIN.kind, arguments=TRAIN.arguments)
    assert summary.images == len(raw)
    assert summary.prompts == sum(raw.num_expressions(i) for i in range(len(raw)))
    assert summary.masks == len({e.ann_id for i in range(len(raw)) for e in raw.expressions(i)})  # one per annotation
    prepared = PreparedReader(tmp_path / "index", synth_root, expect=TRAIN)
    assert_same_samples(raw, prepared)
    assert [prepared.texts(i, normalise_text=True) for i in range(len(raw))] == [
        raw.texts(i, normalise_text=True) for i in range(len(raw))
    ]


def test_prepared_start_up_reads_no_annotation_file_and_follows_a_moved_root(synth_root, tmp_path):
    root = copy_refcoco(synth_root, tmp_path / "before")
    raw = TRAIN.raw_reader(root)
    expected = [raw.load(i) for i in range(len(raw))]
    prepare(raw, root, root / "prepared/train", kind=TRAIN.kind, arguments=TRAIN.arguments)
    folder = root / "refer_seg/refcoco"
    for name in ("instances.json", "refs(unc).p", "refs(google).p"):
        (folder / name).rename(folder / (name + ".gone"))
    moved = root.rename(tmp_path / "after")
    with pytest.raises(FileNotFoundError, match=r"instances\.json"):
        TRAIN.raw_reader(moved)
    prepared = Source(dataset="refcoco", split_by="unc", split="train", prepared="prepared/train").reader(moved)
    assert isinstance(prepared, PreparedReader)
    for index, sample in enumerate(expected):
        got = prepared.load(index)
        assert got.texts == sample.texts
        np.testing.assert_array_equal(got.masks, sample.masks)
        np.testing.assert_array_equal(got.image, sample.image)
        assert got.source == sample.source.replace(str(tmp_path / "before"), str(tmp_path / "after"))
        assert str(tmp_path / "after") in got.source


def test_parallel_preparation_keeps_the_reader_order(synth_root, tmp_path):
    val = Source(dataset="refcoco", split_by="unc", split="val")
    raw = val.raw_reader(synth_root)
    prepare(raw, synth_root, tmp_path / "index", kind=val.kind, arguments=val.arguments, workers=2)
    assert_same_samples(raw, PreparedReader(tmp_path / "index", synth_root))


def test_an_index_is_refused_for_another_source_and_never_written_over_other_files(synth_root, tmp_path):
    raw = TRAIN.raw_reader(synth_root)
    prepare(raw, synth_root, tmp_path / "index", kind=TRAIN.kind, arguments=TRAIN.arguments)
    val = Source(dataset="refcoco", split_by="unc", split="val")
    with pytest.raises(ValueError, match=r"prepared from refer .*'split': 'train'.*refcoco_unc_val"):
        PreparedReader(tmp_path / "index", synth_root, expect=val)
    with pytest.raises(FileNotFoundError, match="evf data prepare"):
        PreparedReader(tmp_path, synth_root)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine/notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a prepared index"):
        prepare(raw, synth_root, tmp_path / "mine", kind=TRAIN.kind, arguments=TRAIN.arguments)
    assert (tmp_path / "mine/notes.txt").read_text() == "keep me"
    # preparing again replaces an index in place
    prepare(raw, synth_root, tmp_path / "index", kind=TRAIN.kind, arguments=TRAIN.arguments)
    assert (tmp_path / "index" / META_FILE).is_file() and not (tmp_path / "index.partial").exists()


def test_a_changed_image_is_reported_against_the_index(synth_root, tmp_path):
    root = copy_refcoco(synth_root, tmp_path / "root")
    val = Source(dataset="refcoco", split_by="unc", split="val")
    raw = val.raw_reader(root)
    prepare(raw, root, root / "index", kind=val.kind, arguments=val.arguments)
    (root / "refer_seg/images").unlink()
    shutil.copytree(synth_root / "refer_seg/images", root / "refer_seg/images")
    from PIL import Image

    path = raw.image_path(0)
    Image.open(path).convert("RGB").resize((40, 30)).save(path, format="JPEG")
    with pytest.raises(ValueError, match=r"30x40 .*prepared index .*says"):
        PreparedReader(root / "index", root).load(0)


OTHER_KINDS = list(WRITERS)


@pytest.mark.parametrize("kind", OTHER_KINDS)
def test_prepared_gives_the_raw_samples_of_every_kind(kind, tmp_path):
    WRITERS[kind](tmp_path, images=6, seed=0)
    source = Source(kind=kind)
    raw = source.raw_reader(tmp_path)
    prepare(raw, tmp_path, tmp_path / "index", kind=kind, arguments=source.arguments)
    assert_same_samples(raw, PreparedReader(tmp_path / "index", tmp_path, expect=source))


@pytest.mark.parametrize("kind", list(READERS))
def test_the_registry_names_each_reader_and_its_own_defaults(kind):
    entry = READERS[kind]
    parameters = inspect.signature(entry.load()).parameters
    assert next(iter(parameters)) == "root"
    for name, default in entry.defaults.items():  # refer's are required; the others' must agree with ours
        assert parameters[name].default in (default, inspect.Parameter.empty), name
    assert set(parameters) == {"root", *entry.fields}
