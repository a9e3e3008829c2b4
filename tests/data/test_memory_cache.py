"""data.cache_in_memory: each image is read once and later draws reuse it, giving exactly the items a fresh read
gives; with augmentation, which changes an image at every draw, it is refused."""

import shutil

import pytest
import torch

from evf_lightning.data.augment import AugmentConfig, Augmenter
from evf_lightning.data.datamodule import EvfDataModule
from evf_lightning.data.expression_dataset import ExpressionDataset
from evf_lightning.data.refer import image_folder
from evf_lightning.data.sampler import Draw
from evf_lightning.data.sources import Source
from evf_lightning.data.transforms import Beit3Preprocess, SamPreprocess

TRAIN = [Source(dataset="refcoco", split_by="unc", split="train")]
VAL = [Source(dataset="refcoco", split_by="unc", split="val")]


def datamodule(root, **options) -> EvfDataModule:
    data = EvfDataModule(
        root=str(root), tokenizer=str(root / "tokenizer"), train=TRAIN, val=VAL, sam_image_size=128,
        beit_image_size=32, expressions_per_image=2, num_workers=0, **options,
    )  # fmt: skip
    data.setup("fit")
    return data


def assert_same_item(cached, fresh, where: str) -> None:
    assert cached.texts == fresh.texts, where
    assert cached.token_ids == fresh.token_ids, where
    assert cached.resized_hw == fresh.resized_hw, where
    for name in ("sam_pixels", "beit_pixels", "masks"):
        assert torch.equal(getattr(cached, name), getattr(fresh, name)), f"{where}: {name}"


def test_cached_items_equal_fresh_reads_in_every_epoch_without_reading_the_disk_again(synth_root, tmp_path):
    root = tmp_path / "synth"
    shutil.copytree(synth_root, root)
    cached, fresh = datamodule(root, cache_in_memory=True), datamodule(synth_root)
    images = range(12)
    draws = [Draw(index, epoch) for epoch in range(3) for index in images]
    # Each image of the generated data has more expressions than the 2 drawn, so epochs draw different ones.
    assert len({(d.index, *cached.train_set.chosen_expressions(d)) for d in draws}) > 2 * len(images)
    first = [cached.train_set[Draw(index, 0)] for index in images]
    shutil.rmtree(root / image_folder("refcoco"))  # from here on, only the cache can supply these images
    for draw in draws:
        assert_same_item(cached.train_set[draw], fresh.train_set[draw], f"train {draw}")
    for index, item in enumerate(first):
        assert_same_item(item, fresh.train_set[Draw(index, 0)], f"first read of train image {index}")
    with pytest.raises(OSError, match="train2014"):
        cached.train_set[Draw(len(images), 0)]  # an image not read before still needs its file


def test_validation_items_are_cached_whole(synth_root):
    cached, fresh = datamodule(synth_root, cache_in_memory=True), datamodule(synth_root)
    for index in range(len(fresh.val_sets[0])):
        for _ in range(2):
            assert_same_item(cached.val_sets[0][index], fresh.val_sets[0][index], f"val image {index}")


def test_augmentation_with_the_cache_is_refused():
    with pytest.raises(ValueError, match=r"data\.cache_in_memory.*hflip_probability=0\.5"):
        ExpressionDataset(
            [], None, SamPreprocess(size=64), Beit3Preprocess(size=32),
            augmenter=Augmenter(AugmentConfig.light()), cache_in_memory=True,
        )  # fmt: skip


def test_shuffled_prompts_are_in_the_cached_items_from_their_first_read(synth_root):
    """The grounding control's shuffled texts are given to the dataset when it is built, so a cached item can
    never hold the true texts: the split's texts are permuted, most of them moved, the pixels untouched."""
    true = datamodule(synth_root, cache_in_memory=True).val_sets[0]
    shuffled = datamodule(synth_root, cache_in_memory=True, shuffle_eval_prompts=True).val_sets[0]
    true_items = [true[index] for index in range(len(true))]
    shuffled_items = [shuffled[index] for index in range(len(shuffled))]
    true_texts = [text for item in true_items for text in item.texts]
    shuffled_texts = [text for item in shuffled_items for text in item.texts]
    assert sorted(shuffled_texts) == sorted(true_texts)
    moved = sum(a != b for a, b in zip(true_texts, shuffled_texts, strict=True))
    assert moved > 0.5 * len(true_texts)
    assert [item.texts for item in shuffled_items] == [shuffled[index].texts for index in range(len(shuffled))]
    for a, b in zip(true_items, shuffled_items, strict=True):
        assert torch.equal(a.sam_pixels, b.sam_pixels) and torch.equal(a.masks, b.masks)
