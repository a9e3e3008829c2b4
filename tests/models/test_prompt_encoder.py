"""BEiT-3 prompt encoder: fusion timing and prompt token as parameters over the same weights (Tables 4, 12)."""

import pytest
import torch

from evf_lightning.models.beit3 import Beit3Config
from evf_lightning.models.evf import EvfModel, EvfModelConfig
from evf_lightning.models.prompt_encoder import Beit3PromptConfig, Beit3PromptEncoder
from evf_lightning.models.sam import SamBackboneConfig

TINY = Beit3Config.tiny(vocab_size=64, img_size=32)


def encoder(**settings) -> Beit3PromptEncoder:
    """Every variant built from seed 0, so they share weights and differ only in how they use them."""
    torch.manual_seed(0)
    return Beit3PromptEncoder(Beit3PromptConfig(TINY, **settings)).eval()


def inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    ids = torch.randint(3, 64, (2, 6), generator=generator)
    return pixels, ids, torch.ones_like(ids)


def test_late_limited_early_and_full_early_give_different_outputs_on_the_same_input():
    pixels, ids, mask = inputs()
    token = {"prompt_token": "concat_cls"}
    late = encoder(fusion="late")(pixels, ids, mask)
    limited = encoder(fusion="early", cross_modal_layers=(1, 2), **token)(pixels, ids, mask)
    full = encoder(fusion="early", **token)(pixels, ids, mask)
    assert late.shape == limited.shape == full.shape == (2, 2 * TINY.embed_dim)
    for a, b in ((late, limited), (late, full), (limited, full)):
        assert (a - b).abs().max() > 1e-3
    # fused in no layer, the joint pass is exactly the two unimodal passes that late fusion concatenates
    unfused = encoder(fusion="early", cross_modal_layers=(0, 0), **token)(pixels, ids, mask)
    torch.testing.assert_close(unfused, late, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("token", ["image_cls", "image_mean"])
def test_text_reaches_the_image_side_only_through_cross_modal_layers(token):
    pixels, ids, mask = inputs(0)
    _, other_ids, _ = inputs(1)
    unfused = encoder(fusion="early", cross_modal_layers=(0, 0), prompt_token=token)
    torch.testing.assert_close(unfused(pixels, ids, mask), unfused(pixels, other_ids, mask))
    full = encoder(fusion="early", prompt_token=token)
    assert (full(pixels, ids, mask) - full(pixels, other_ids, mask)).abs().max() > 1e-3


def test_each_prompt_token_is_the_named_row_of_the_joint_sequence():
    pixels, ids, mask = inputs()
    hidden = encoder().beit3(pixels, ids, ~mask.bool())
    text_start = TINY.num_vision_tokens
    expected = {
        "image_cls": hidden[:, 0],
        "text_cls": hidden[:, text_start],
        "image_mean": hidden[:, 1:text_start].mean(1),
        "concat_cls": torch.cat([hidden[:, text_start], hidden[:, 0]], -1),
    }
    for token, value in expected.items():
        torch.testing.assert_close(encoder(prompt_token=token)(pixels, ids, mask), value)
    text_only = encoder(fusion="text")
    torch.testing.assert_close(text_only(pixels, ids, mask), text_only.beit3(None, ids)[:, 0])


def test_projector_width_follows_the_prompt_token():
    backbone = SamBackboneConfig.tiny(image_size=64)
    for settings, width in (({"fusion": "late"}, 128), ({"prompt_token": "concat_cls"}, 128), ({}, 64)):
        model = EvfModel(EvfModelConfig(backbone, Beit3PromptConfig(TINY, **settings)))
        assert model.projector[0].in_features == width


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"fusion": "text", "prompt_token": "image_cls"}, "prompt_token 'image_cls' is impossible with fusion 'text'"),
        ({"fusion": "late", "prompt_token": "image_mean"}, "impossible with fusion 'late'"),
        ({"fusion": "late", "cross_modal_layers": (0, 1)}, "cross_modal_layers .* needs fusion 'early'"),
        ({"cross_modal_layers": (1, 3)}, r"0 <= i <= j <= depth 2"),
    ],
)
def test_impossible_settings_fail_when_configured(settings, message):
    with pytest.raises(ValueError, match=message):
        Beit3PromptConfig(TINY, **settings)
