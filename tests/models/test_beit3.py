"""BEiT-3: official names and sizes, fusion timing, padding, and SDPA against an eager reference.

The eager reference below is written from reference/checkpoints.md §2 (torchscale's behaviour), works on the
state dict alone, picks experts with a per-token mask instead of the module's split-and-concatenate, and
masks attention scores with -inf before an fp32 softmax, so it shares no code path with the module.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from evf_lightning.models.beit3 import Beit3Config, Beit3Encoder

VOCAB, IMAGE, LENGTH = 50, 32, 6
TINY = Beit3Config.tiny(vocab_size=VOCAB, img_size=IMAGE)  # 64 wide, 2 layers, 2x2 patches + [CLS]


def expected_shapes(config: Beit3Config) -> dict[str, tuple[int, ...]]:
    """Every torchscale BEiT3 key (without `mm_extractor.beit3.`) and its shape, from the spec."""
    d, f, p = config.embed_dim, config.ffn_dim, config.patch_size
    shapes = {
        "text_embed.weight": (config.vocab_size, d),
        "vision_embed.proj.weight": (d, config.in_chans, p, p),
        "vision_embed.proj.bias": (d,),
        "vision_embed.cls_token": (1, 1, d),
        "vision_embed.mask_token": (1, 1, d),
        "encoder.embed_positions.A.weight": ((config.img_size // p) ** 2 + 1 + 2, d),
        "encoder.embed_positions.B.weight": (config.max_text_positions, d),
    }
    for way in "AB":
        shapes |= {f"encoder.layer_norm.{way}.weight": (d,), f"encoder.layer_norm.{way}.bias": (d,)}
        for i in range(config.depth):
            layer = f"encoder.layers.{i}"
            for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                shapes[f"{layer}.self_attn.{proj}.{way}.weight"] = (d, d)
                shapes[f"{layer}.self_attn.{proj}.{way}.bias"] = (d,)
            for norm in ("self_attn.inner_attn_ln", "self_attn_layer_norm", "final_layer_norm"):
                shapes |= {f"{layer}.{norm}.{way}.weight": (d,), f"{layer}.{norm}.{way}.bias": (d,)}
            shapes |= {
                f"{layer}.ffn.{way}.fc1.weight": (f, d),
                f"{layer}.ffn.{way}.fc1.bias": (f,),
                f"{layer}.ffn.{way}.ffn_layernorm.weight": (f,),
                f"{layer}.ffn.{way}.ffn_layernorm.bias": (f,),
                f"{layer}.ffn.{way}.fc2.weight": (d, f),
                f"{layer}.ffn.{way}.fc2.bias": (d,),
            }
    return shapes


def shapes_of(model: Beit3Encoder) -> dict[str, tuple[int, ...]]:
    return {name: tuple(value.shape) for name, value in model.state_dict().items()}


@pytest.mark.parametrize(
    ("config", "keys", "parameters"),
    [(Beit3Config.large(), 971, 672_702_464), (Beit3Config.base(), 491, 220_987_392)],
    ids=["large", "base"],
)
def test_published_sizes_on_meta(config: Beit3Config, keys: int, parameters: int) -> None:
    with torch.device("meta"):
        model = Beit3Encoder(config)
    assert shapes_of(model) == expected_shapes(config)
    assert len(model.state_dict()) == keys
    assert sum(p.numel() for p in model.parameters()) == parameters
    assert model.state_dict()["encoder.embed_positions.A.weight"].shape[0] == 199  # 197 tokens + 2
    assert model.num_vision_tokens == 197


def test_tiny_has_exactly_the_official_names() -> None:
    model = Beit3Encoder(TINY)
    assert shapes_of(model) == expected_shapes(TINY)
    # embeddings 7, final LayerNorms 4, and 20 tensors per expert per layer
    assert len(model.state_dict()) == 7 + 4 + TINY.depth * 2 * 20
    assert not list(model.buffers())  # nothing hidden beside the official tensors


def test_config_presets_and_validation() -> None:
    base = Beit3Config.base()
    assert (base.embed_dim, base.depth, base.num_heads, base.ffn_dim) == (768, 12, 12, 3072)
    assert Beit3Config.large() == Beit3Config()
    assert TINY.num_vision_tokens == 5
    with pytest.raises(ValueError, match="divisible"):
        Beit3Config(embed_dim=65, num_heads=4)
    with pytest.raises(ValueError, match="multiple"):
        Beit3Config(img_size=30, patch_size=16)


@pytest.fixture(scope="module")
def model() -> Beit3Encoder:
    torch.manual_seed(0)
    model = Beit3Encoder(TINY).eval()
    with torch.no_grad():  # LayerNorms and biases start at 1/0; randomise them so every tensor matters
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(torch.randn_like(p) * 0.3)
    return model


def inputs(seed: int = 0, batch: int = 2, length: int = LENGTH) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randn(batch, 3, IMAGE, IMAGE, generator=g)
    return pixels, torch.randint(3, VOCAB, (batch, length), generator=g)


def right_padded(ids: Tensor, extra: int, seed: int = 5) -> tuple[Tensor, Tensor]:
    """Append `extra` padded positions holding arbitrary ids (their value must not matter)."""
    g = torch.Generator().manual_seed(seed)
    filler = torch.randint(3, VOCAB, (ids.shape[0], extra), generator=g)
    padding = torch.zeros(ids.shape[0], ids.shape[1] + extra, dtype=torch.bool)
    padding[:, ids.shape[1] :] = True
    return torch.cat([ids, filler], dim=1), padding


def test_output_layout_vision_then_text(model: Beit3Encoder) -> None:
    pixels, ids = inputs()
    assert model(pixels, ids).shape == (2, 5 + LENGTH, 64)
    assert model(None, ids).shape == (2, LENGTH, 64)
    assert model(pixels, None).shape == (2, 5, 64)
    assert model.num_vision_tokens == 5


def test_padding_changes_nothing_at_real_tokens(model: Beit3Encoder) -> None:
    pixels, ids = inputs()
    plain = model(pixels, ids)
    padded_ids, padding = right_padded(ids, 4)
    padded = model(pixels, padded_ids, padding)
    torch.testing.assert_close(padded[:, 0], plain[:, 0], atol=1e-5, rtol=1e-5)  # image [CLS]
    torch.testing.assert_close(padded[:, : 5 + LENGTH], plain, atol=1e-5, rtol=1e-5)
    text_only = model(None, padded_ids, padding)[:, :LENGTH]
    torch.testing.assert_close(text_only, model(None, ids), atol=1e-5, rtol=1e-5)
    # without the mask the extra tokens are real text and do change the image [CLS]
    assert not torch.allclose(model(pixels, padded_ids)[:, 0], plain[:, 0], atol=1e-4)


def test_padding_per_sample(model: Beit3Encoder) -> None:
    """Each sample of a batch padded to a different length equals that sample encoded alone, unpadded."""
    pixels, ids = inputs(3, batch=2, length=8)
    padding = torch.zeros_like(ids, dtype=torch.bool)
    padding[1, 4:] = True
    batch = model(pixels, ids, padding)[:, 0]
    alone = model(pixels[1:], ids[1:, :4])[:, 0]
    torch.testing.assert_close(batch[1:], alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batch[:1], model(pixels[:1], ids[:1])[:, 0], atol=1e-5, rtol=1e-5)


def test_without_cross_modal_layers_text_cannot_reach_the_image(model: Beit3Encoder) -> None:
    pixels, ids = inputs(0)
    _, other_ids = inputs(1)
    none = (0, 0)
    cls = model(pixels, ids, cross_modal_layers=none)[:, 0]
    torch.testing.assert_close(cls, model(pixels, other_ids, cross_modal_layers=none)[:, 0])
    assert not torch.allclose(model(pixels, ids)[:, 0], model(pixels, other_ids)[:, 0], atol=1e-4)
    # no fusion is exactly two unimodal encoders side by side
    separate = model(pixels, ids, cross_modal_layers=none)
    torch.testing.assert_close(separate[:, :5], model(pixels, None), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(separate[:, 5:], model(None, ids), atol=1e-5, rtol=1e-5)


def test_fusion_timing_is_honoured(model: Beit3Encoder) -> None:
    pixels, ids = inputs()
    full = model(pixels, ids)
    torch.testing.assert_close(model(pixels, ids, cross_modal_layers=(0, TINY.depth)), full)
    first = model(pixels, ids, cross_modal_layers=(0, 1))
    second = model(pixels, ids, cross_modal_layers=(1, 2))
    none = model(pixels, ids, cross_modal_layers=(0, 0))
    for a, b in ((full, first), (first, second), (first, none), (second, none)):
        assert not torch.allclose(a[:, 0], b[:, 0], atol=1e-4)


def test_text_only_uses_only_the_language_expert_and_vision_only_the_vision_expert() -> None:
    torch.manual_seed(0)
    model = Beit3Encoder(TINY).eval()
    pixels, ids = inputs()
    text, vision = model(None, ids), model(pixels, None)
    with torch.no_grad():
        model.encoder.layers[0].ffn.A.fc1.weight.add_(1.0)
    torch.testing.assert_close(model(None, ids), text)
    assert not torch.allclose(model(pixels, None), vision)
    with torch.no_grad():
        model.encoder.layers[0].ffn.B.fc1.weight.add_(1.0)
    assert not torch.allclose(model(None, ids), text)


def test_bad_calls_say_what_is_wrong(model: Beit3Encoder) -> None:
    pixels, ids = inputs()
    with pytest.raises(ValueError, match="pixels, input_ids"):
        model(None, None)
    with pytest.raises(ValueError, match="tokens"):
        model(torch.randn(1, 3, 48, 48), ids[:1])
    with pytest.raises(ValueError, match="position rows"):
        model(None, torch.ones(1, TINY.max_text_positions - 1, dtype=torch.long))
    for window in ((1, 0), (0, TINY.depth + 1), (-1, 1)):
        with pytest.raises(ValueError, match="cross_modal_layers"):
            model(pixels, ids, cross_modal_layers=window)


def eager_reference(
    state: dict[str, Tensor],
    config: Beit3Config,
    pixels: Tensor | None,
    ids: Tensor | None,
    padding: Tensor | None = None,
    cross_modal_layers: tuple[int, int] | None = None,
) -> Tensor:
    """BEiT-3 written out: per-token expert choice, -inf score masking, fp32 softmax."""
    eps, heads = config.layernorm_eps, config.num_heads

    pieces, vision_flags = [], []
    if pixels is not None:
        conv = state["vision_embed.proj.weight"], state["vision_embed.proj.bias"]
        patches = F.conv2d(pixels, *conv, stride=config.patch_size)
        patches = patches.flatten(2).transpose(1, 2)
        tokens = torch.cat([state["vision_embed.cls_token"].expand(len(pixels), 1, -1), patches], dim=1)
        pieces.append(tokens + state["encoder.embed_positions.A.weight"][2 : 2 + tokens.shape[1]])
        vision_flags.append(torch.ones(tokens.shape[1], dtype=torch.bool))
    if ids is not None:
        positions = state["encoder.embed_positions.B.weight"][2 : 2 + ids.shape[1]]
        pieces.append(state["text_embed.weight"][ids] + positions)
        vision_flags.append(torch.zeros(ids.shape[1], dtype=torch.bool))
    x = torch.cat(pieces, dim=1)
    is_vision = torch.cat(vision_flags)
    n, t, d = x.shape
    pad = torch.zeros(n, t, dtype=torch.bool)
    if padding is not None:
        pad[:, t - padding.shape[1] :] = padding
    x = x.masked_fill(pad[..., None], 0.0)
    cross = is_vision[:, None] != is_vision[None, :]

    def expert(name: str, h: Tensor, fn: Callable[[Tensor, str], Tensor]) -> Tensor:
        return torch.where(is_vision[None, :, None], fn(h, f"{name}.A"), fn(h, f"{name}.B"))

    def norm(h: Tensor, prefix: str) -> Tensor:
        return F.layer_norm(h, h.shape[-1:], state[f"{prefix}.weight"], state[f"{prefix}.bias"], eps)

    def linear(h: Tensor, prefix: str) -> Tensor:
        return F.linear(h, state[f"{prefix}.weight"], state[f"{prefix}.bias"])

    def ffn(h: Tensor, prefix: str) -> Tensor:
        h = F.gelu(linear(h, f"{prefix}.fc1").float()).to(h.dtype)
        return linear(norm(h, f"{prefix}.ffn_layernorm"), f"{prefix}.fc2")

    first, last = cross_modal_layers or (0, config.depth)
    for i in range(config.depth):
        layer = f"encoder.layers.{i}"
        h = expert(f"{layer}.self_attn_layer_norm", x, norm)
        q, k, v = (expert(f"{layer}.self_attn.{p}_proj", h, linear) for p in "qkv")
        q, k, v = (z.view(n, t, heads, -1).transpose(1, 2) for z in (q, k, v))
        scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)
        blocked = pad[:, None, None, :] | (cross if not first <= i < last else torch.zeros_like(cross))
        scores = scores.masked_fill(blocked, float("-inf"))
        weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(v.dtype)
        mixed = (weights @ v).transpose(1, 2).reshape(n, t, d)
        mixed = expert(f"{layer}.self_attn.inner_attn_ln", mixed, norm)
        x = x + expert(f"{layer}.self_attn.out_proj", mixed, linear)
        x = x + expert(f"{layer}.ffn", expert(f"{layer}.final_layer_norm", x, norm), ffn)
    return expert("encoder.layer_norm", x, norm)


@pytest.mark.parametrize(
    ("mode", "cross_modal_layers"),
    [
        ("joint", None),
        ("joint", (0, 1)),
        ("joint", (1, 2)),
        ("joint", (0, 0)),
        ("text", None),
        ("vision", None),
    ],
)
def test_sdpa_path_equals_eager_softmax_attention(model: Beit3Encoder, mode: str, cross_modal_layers) -> None:
    pixels, ids = inputs(2, batch=3, length=7)
    padding = None
    if mode != "vision":
        padding = torch.zeros_like(ids, dtype=torch.bool)
        padding[1, 4:] = True
        padding[2, 2:] = True
    pixels = None if mode == "text" else pixels
    ids = None if mode == "vision" else ids
    state = model.state_dict()
    expected = eager_reference(state, TINY, pixels, ids, padding, cross_modal_layers)
    actual = model(pixels, ids, padding, cross_modal_layers=cross_modal_layers)
    torch.testing.assert_close(actual, expected, atol=2e-5, rtol=2e-5)


def test_bfloat16_tracks_float32(model: Beit3Encoder) -> None:
    pixels, ids = inputs()
    ids, padding = right_padded(ids, 2)
    reference = model(pixels, ids, padding)
    half = Beit3Encoder(TINY).to(torch.bfloat16).eval()
    half.load_state_dict(model.state_dict())
    out = half(pixels, ids, padding)  # float32 pixels are cast to the weights' dtype
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), reference, atol=0.1, rtol=0.05)


def test_backward_reaches_both_experts_and_skips_padding() -> None:
    torch.manual_seed(0)
    model = Beit3Encoder(TINY)
    pixels, ids = inputs()
    ids, padding = right_padded(ids, 3)
    ids[:, -3:] = 0  # id 0 occurs only at padded positions
    pixels.requires_grad_(True)
    # a random readout: the plain sum of a LayerNorm output is constant and has no gradient
    (model(pixels, ids, padding)[:, 0] * torch.randn(64)).sum().backward()
    layer = model.encoder.layers[0]
    assert layer.ffn.A.fc1.weight.grad.abs().sum() > 0
    assert layer.ffn.B.fc1.weight.grad.abs().sum() > 0  # text reaches the image [CLS] through attention
    assert pixels.grad is not None and pixels.grad.abs().sum() > 0
    assert model.text_embed.weight.grad[0].abs().sum() == 0  # padded embeddings are zeroed
    assert model.encoder.embed_positions.B.weight.grad[2].abs().sum() > 0
    assert model.encoder.embed_positions.B.weight.grad[:2].abs().sum() == 0  # reserved fairseq rows
    assert model.vision_embed.mask_token.grad is None  # pre-training only
