"""Training augmentation: off by default and then a no-op, flips that move image, masks and the words left and
right together, the other steps keeping masks binary and aligned, all of it drawn from the given generator."""

import os

import numpy as np
import pytest
import torch
import yaml

from evf_lightning.commands.data_prepare import load_data_config
from evf_lightning.data.augment import AugmentConfig, Augmenter, swap_left_right
from evf_lightning.data.human_parsing import HumanParsingReader
from evf_lightning.data.sample import ReferringSample
from evf_lightning.data.sampler import Draw
from evf_lightning.data.synthetic_human_parsing import write_synthetic_human_parsing


def _sample(height: int = 40, width: int = 60) -> ReferringSample:
    image = np.random.default_rng(0).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    masks = np.zeros((2, height, width), dtype=np.uint8)
    masks[0, 10:30, 5:20] = 1  # on the left
    masks[1, 5:15, 40:55] = 1  # on the right
    return ReferringSample(image, ["the Leftmost box", "leftover on the right"], masks, "test sample")


@pytest.mark.parametrize(
    ("text", "swapped"),
    [
        ("the left man", "the right man"),
        ("Right guy", "Left guy"),
        ("LEFT-HAND side", "RIGHT-HAND side"),
        ("the rightmost cup, leftmost plate", "the leftmost cup, rightmost plate"),
        ("lefthand glove, right-handed player", "righthand glove, left-handed player"),
        ("move leftwards then right.", "move rightwards then left."),
        ("leftover bright copyright lefty outright", "leftover bright copyright lefty outright"),
        ("[semantic] left arm", "[semantic] right arm"),
    ],
)
def test_left_and_right_swap_as_whole_words_in_their_case(text, swapped):
    assert swap_left_right(text) == swapped
    assert swap_left_right(swapped) == text


def test_off_by_default_returns_the_sample_itself_and_draws_nothing():
    assert AugmentConfig() == AugmentConfig.paper() == AugmentConfig(scale=[1, 1]) and not AugmentConfig().enabled
    sample = _sample()
    rng = np.random.default_rng(5)
    state = rng.bit_generator.state
    for augmenter in (Augmenter(), Augmenter(AugmentConfig.paper())):
        out = augmenter.apply(sample, rng)
        assert out is sample
    assert rng.bit_generator.state == state


def test_flip_mirrors_image_and_masks_and_swaps_the_words():
    sample = _sample()
    out = Augmenter(AugmentConfig(hflip_probability=1.0))(sample, np.random.default_rng(0))
    np.testing.assert_array_equal(out.image, sample.image[:, ::-1])
    np.testing.assert_array_equal(out.masks, sample.masks[:, :, ::-1])
    assert out.texts == ["the Rightmost box", "leftover on the left"]
    assert out.source == sample.source and out.image.flags["C_CONTIGUOUS"] and out.masks.flags["C_CONTIGUOUS"]
    assert sample.texts == ["the Leftmost box", "leftover on the right"]  # the input is left as it was


def test_half_the_draws_flip_and_exactly_those_swap_words():
    sample = _sample()
    augmenter = Augmenter(AugmentConfig(hflip_probability=0.5))
    flips = 0
    for seed in range(200):
        out = augmenter(sample, np.random.default_rng(seed))
        flipped = bool((out.masks[0, :, 40:55] == 1).any())
        assert flipped == (out.texts[0] == "the Rightmost box") == (not np.array_equal(out.image, sample.image))
        flips += flipped
    assert 80 <= flips <= 120  # binomial(200, 0.5): 6.7 sigma either side


def test_a_flipped_human_parsing_sample_still_names_the_viewer_side(tmp_path):
    write_synthetic_human_parsing(tmp_path, images=3, seed=4)
    reader = HumanParsingReader(tmp_path)
    augmenter = Augmenter(AugmentConfig(hflip_probability=1.0))
    for index in range(len(reader)):
        sample = reader.load(index)
        out = augmenter(sample, np.random.default_rng(index))
        assert sorted(out.texts) == sorted(sample.texts)  # left arm <-> right arm: the same set of prompts
        mean_x = {text: np.nonzero(mask)[1].mean() for text, mask in zip(out.texts, out.masks, strict=True)}
        for part in ("arm", "leg", "shoe"):
            assert mean_x[f"[semantic] left {part}"] < mean_x[f"[semantic] right {part}"]


def test_same_seed_same_result_and_another_seed_another():
    sample = _sample(64, 80)
    augmenter = Augmenter(AugmentConfig.light())
    first, again, other = (augmenter(sample, np.random.default_rng(seed)) for seed in (11, 11, 12))
    np.testing.assert_array_equal(first.image, again.image)
    np.testing.assert_array_equal(first.masks, again.masks)
    assert first.texts == again.texts
    assert first.image.shape != other.image.shape or not np.array_equal(first.image, other.image)
    # a fresh augmenter with the same config gives the same draw: the state is in the generator only
    np.testing.assert_array_equal(
        Augmenter(AugmentConfig.light())(sample, np.random.default_rng(11)).image, first.image
    )


@pytest.mark.parametrize("seed", range(5))
def test_every_step_on_keeps_masks_binary_and_aligned(seed):
    sample = _sample(64, 80)
    out = Augmenter(AugmentConfig.light())(sample, np.random.default_rng(seed))
    assert out.image.dtype == np.uint8 and out.masks.dtype == np.uint8
    assert out.masks.shape == (2, *out.image.shape[:2]) and set(np.unique(out.masks)) <= {0, 1}
    height, width = out.image.shape[:2]
    assert 0.9 * 64 - 1 <= height <= 64 and 0.9 * 80 - 1 <= width <= 80  # at most 5% cut off each side


def test_zoom_scales_masks_with_the_image_and_keeps_the_canvas():
    sample = _sample()
    out = Augmenter(AugmentConfig(scale=(0.5, 0.5)))(sample, np.random.default_rng(0))
    assert out.image.shape == sample.image.shape
    ratio = out.masks.sum(axis=(1, 2)) / sample.masks.sum(axis=(1, 2))
    np.testing.assert_allclose(ratio, 0.25, atol=0.05)
    assert out.image[0, 0].tolist() == [0, 0, 0]  # zoomed out: black border


def test_colour_jitter_moves_pixels_but_not_masks_or_words():
    sample = _sample()
    out = Augmenter(AugmentConfig(brightness=0.5, contrast=0.5))(sample, np.random.default_rng(3))
    np.testing.assert_array_equal(out.masks, sample.masks)
    assert out.texts == sample.texts and out.image.shape == sample.image.shape
    assert np.abs(out.image.astype(int) - sample.image.astype(int)).mean() > 1.0


def test_a_sample_without_masks_is_augmented_too():
    sample = ReferringSample(_sample().image, [], np.zeros((0, 40, 60), dtype=np.uint8), "empty")
    out = Augmenter(AugmentConfig.light())(sample, np.random.default_rng(1))
    assert out.masks.shape == (0, *out.image.shape[:2]) and out.texts == []


def test_bad_settings_are_named():
    for kwargs, message in (
        ({"hflip_probability": 1.5}, r"hflip_probability must be in \[0, 1\], got 1.5"),
        ({"scale": (1.2, 0.8)}, r"scale must be \(low, high\) with 0 < low <= high, got \(1.2, 0.8\)"),
        ({"crop_border": 0.5}, r"crop_border must be in \[0, 0.5\), got 0.5"),
        ({"saturation": -0.1}, r"saturation must be in \[0, 1\), got -0.1"),
    ):
        with pytest.raises(ValueError, match=message):
            AugmentConfig(**kwargs)


def test_albumentations_is_kept_offline(monkeypatch):
    monkeypatch.delenv("NO_ALBUMENTATIONS_UPDATE", raising=False)
    Augmenter(AugmentConfig(brightness=0.1))
    assert os.environ["NO_ALBUMENTATIONS_UPDATE"] == "1"


def test_the_data_module_flips_training_draws_only_and_their_words_with_them(synth_root, tmp_path):
    config = tmp_path / "data.yaml"
    config.write_text(yaml.safe_dump({
        "root": str(synth_root), "tokenizer": str(synth_root / "tokenizer"), "sam_image_size": 64,
        "beit_image_size": 32, "num_workers": 0, "train": [{"split": "train"}], "val": [{"split": "val"}],
        "augment": {"hflip_probability": 1.0},
    }))  # fmt: skip
    flipped = load_data_config(config)
    assert flipped.augment == AugmentConfig(hflip_probability=1.0)
    plain = load_data_config(config)
    plain.augment = AugmentConfig.paper()
    for module in (plain, flipped):
        module.setup("fit")
    swapped = 0
    for index in range(8):
        a, b = plain.train_set[Draw(index, 0)], flipped.train_set[Draw(index, 0)]
        assert b.texts == [swap_left_right(text) for text in a.texts]
        assert all(torch.equal(m, n.flip(-1)) for m, n in zip(a.masks, b.masks, strict=True))
        assert not torch.equal(a.sam_pixels, b.sam_pixels)
        swapped += a.texts != b.texts
    assert swapped  # the generated sentences name sides, so the swap is seen
    a, b = plain.val_sets[0][0], flipped.val_sets[0][0]  # evaluation reads images as they are
    assert a.texts == b.texts and torch.equal(a.masks, b.masks)


def test_augmentation_and_an_embedding_cache_are_refused_together(tmp_path):
    from evf_lightning.data.datamodule import EvfDataModule

    with pytest.raises(ValueError, match=r"data.embedding_cache .*cache holds features .* data.augment="):
        EvfDataModule(str(tmp_path), str(tmp_path), embedding_cache=str(tmp_path / "cache"), augment=AugmentConfig(0.5))
