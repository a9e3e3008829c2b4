"""BEiT-3: official names and sizes, fusion timing, padding, SDPA against a plain softmax attention."""

import pytest
import torch
import torch.nn.functional as F

from evf_lightning.models.beit3 import Beit3Config, Beit3Encoder


@pytest.mark.parametrize(("config", "keys", "parameters"), [
    (Beit3Config.large(), 971, 672_702_464), (Beit3Config.base(), 491, 220_987_392),
])  # fmt: skip
def test_published_sizes_on_meta(config, keys, parameters):
    with torch.device("meta"):
        model = Beit3Encoder(config)
    state = model.state_dict()
    assert len(state) == keys
    assert sum(p.numel() for p in model.parameters()) == parameters
    d = config.embed_dim
    assert state["encoder.embed_positions.A.weight"].shape == (199, d)
    assert state["encoder.embed_positions.B.weight"].shape == (1024, d)
    assert state["encoder.layers.0.ffn.B.ffn_layernorm.weight"].shape == (4 * d,)
    assert state["encoder.layers.0.self_attn.inner_attn_ln.A.bias"].shape == (d,)


@pytest.fixture(scope="module")
def model() -> Beit3Encoder:
    torch.manual_seed(0)
    return Beit3Encoder(Beit3Config.tiny(vocab_size=50, img_size=32)).eval()


def inputs(seed: int = 0, length: int = 6):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, 32, 32, generator=g), torch.randint(3, 50, (2, length), generator=g)


def test_output_layout_vision_then_text(model):
    pixels, ids = inputs()
    out = model(pixels, ids)
    assert out.shape == (2, model.num_vision_tokens + 6, 64)
    assert model.num_vision_tokens == 5  # 2x2 patches + [CLS]


def test_padding_does_not_change_the_image_cls(model):
    pixels, ids = inputs()
    plain = model(pixels, ids)[:, 0]
    padded_ids = torch.cat([ids, torch.ones(2, 4, dtype=torch.long)], dim=1)
    padding = torch.zeros(padded_ids.shape, dtype=torch.bool)
    padding[:, 6:] = True
    torch.testing.assert_close(model(pixels, padded_ids, padding)[:, 0], plain, atol=1e-5, rtol=1e-5)


def test_fusion_limited_to_no_layer_keeps_text_out_of_the_image_cls(model):
    pixels, ids = inputs(0)
    _, other_ids = inputs(1)
    none = (0, 0)
    torch.testing.assert_close(
        model(pixels, ids, cross_modal_layers=none)[:, 0],
        model(pixels, other_ids, cross_modal_layers=none)[:, 0],
    )
    # with full early fusion the text does reach the image [CLS]
    assert not torch.allclose(model(pixels, ids)[:, 0], model(pixels, other_ids)[:, 0])
    # no fusion equals the vision-only forward for the image tokens
    torch.testing.assert_close(
        model(pixels, ids, cross_modal_layers=none)[:, :5], model(pixels, None), atol=1e-5, rtol=1e-5
    )


def test_fusion_timing_changes_the_output(model):
    pixels, ids = inputs()
    full = model(pixels, ids)[:, 0]
    first = model(pixels, ids, cross_modal_layers=(0, 1))[:, 0]
    second = model(pixels, ids, cross_modal_layers=(1, 2))[:, 0]
    assert not torch.allclose(full, first) and not torch.allclose(first, second)


def test_text_only_forward_uses_only_the_language_expert():
    torch.manual_seed(0)
    model = Beit3Encoder(Beit3Config.tiny(vocab_size=50, img_size=32)).eval()
    _, ids = inputs()
    before = model(None, ids)
    assert before.shape == (2, 6, 64)
    with torch.no_grad():
        model.encoder.layers[0].ffn.A.fc1.weight.add_(1.0)  # vision expert: no effect on text only
    torch.testing.assert_close(model(None, ids), before)
    with torch.no_grad():
        model.encoder.layers[0].ffn.B.fc1.weight.add_(1.0)  # language expert: changes it
    assert not torch.allclose(model(None, ids), before)


def eager_reference(model: Beit3Encoder, pixels, ids):
    """Plain softmax attention, written out, for the joint (full fusion) forward without padding."""
    x = torch.cat([model.vision_embed(pixels), model.text_embed(ids)], dim=1)
    split = model.num_vision_tokens
    pos = model.encoder.embed_positions
    x = x + torch.cat([pos.A(torch.arange(2, split + 2)), pos.B(torch.arange(2, ids.shape[1] + 2))])[None]

    def way(m, t):
        return torch.cat([m.A(t[:, :split]), m.B(t[:, split:])], dim=1)

    for layer in model.encoder.layers:
        attn, h = layer.self_attn, way(layer.self_attn_layer_norm, x)
        n, t, d = h.shape
        q, k, v = (
            way(p, h).view(n, t, attn.num_heads, -1).transpose(1, 2) for p in (attn.q_proj, attn.k_proj, attn.v_proj)
        )
        weights = torch.softmax((q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2), dim=-1, dtype=torch.float32)
        o = (weights @ v).transpose(1, 2).reshape(n, t, d)
        x = x + way(attn.out_proj, way(attn.inner_attn_ln, o))
        h = way(layer.final_layer_norm, x)
        ffn = layer.ffn
        x = x + torch.cat(
            [f.fc2(f.ffn_layernorm(F.gelu(f.fc1(part)))) for f, part in ((ffn.A, h[:, :split]), (ffn.B, h[:, split:]))],
            1,
        )
    return way(model.encoder.layer_norm, x)


def test_sdpa_path_equals_plain_softmax_attention(model):
    pixels, ids = inputs(2)
    torch.testing.assert_close(model(pixels, ids), eager_reference(model, pixels, ids), atol=1e-5, rtol=1e-5)


def test_backward_reaches_both_experts():
    torch.manual_seed(0)
    model = Beit3Encoder(Beit3Config.tiny(vocab_size=50, img_size=32))
    pixels, ids = inputs()
    # a random readout: the plain sum of a LayerNorm output is constant and has no gradient
    (model(pixels, ids)[:, 0] * torch.randn(64)).sum().backward()
    layer = model.encoder.layers[0]
    assert layer.ffn.A.fc1.weight.grad.abs().sum() > 0
    assert layer.ffn.B.fc1.weight.grad.abs().sum() > 0  # text reaches the image CLS through attention
