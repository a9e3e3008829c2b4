"""EfficientSAM backbone and EVF-Effi-SAM: official sizes, key names and shapes, numerics, the decode, freezing."""

import math
from pathlib import Path

import pytest
import torch
from jsonargparse import ArgumentParser
from torch import nn

from evf_lightning.hub.official_names import EFFI_RULES, name_map
from evf_lightning.models.efficient_sam import (
    AttentionForTwoWayAttentionBlock,
    EfficientSamBackboneConfig,
    EfficientSamImageBackbone,
    LayerNorm2d,
)
from evf_lightning.models.evf import EvfModel, EvfModelConfig
from evf_lightning.models.image_features import ImageFeatures
from evf_lightning.training.trainable import TrainableParts, apply_trainable

EFFI = name_map("effi")
REPO = Path(__file__).resolve().parents[2]

# One key per module kind of the official EfficientSAM-S inside EVF-Effi-SAM-L (reference/checkpoints.md §5).
OFFICIAL_SHAPES = {
    "visual_model.image_encoder.patch_embed.proj.weight": (384, 3, 16, 16),
    "visual_model.image_encoder.patch_embed.proj.bias": (384,),
    "visual_model.image_encoder.pos_embed": (1, 197, 384),
    "visual_model.image_encoder.blocks.11.norm1.weight": (384,),
    "visual_model.image_encoder.blocks.0.norm2.bias": (384,),
    "visual_model.image_encoder.blocks.0.attn.qkv.weight": (1152, 384),
    "visual_model.image_encoder.blocks.0.attn.qkv.bias": (1152,),
    "visual_model.image_encoder.blocks.5.attn.proj.weight": (384, 384),
    "visual_model.image_encoder.blocks.0.mlp.fc1.weight": (1536, 384),
    "visual_model.image_encoder.blocks.0.mlp.fc2.weight": (384, 1536),
    "visual_model.image_encoder.neck.0.weight": (256, 384, 1, 1),
    "visual_model.image_encoder.neck.1.weight": (256,),
    "visual_model.image_encoder.neck.2.weight": (256, 256, 3, 3),
    "visual_model.image_encoder.neck.3.bias": (256,),
    "visual_model.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix": (2, 128),
    "visual_model.prompt_encoder.invalid_points.weight": (1, 256),
    "visual_model.prompt_encoder.point_embeddings.weight": (1, 256),
    "visual_model.prompt_encoder.bbox_top_left_embeddings.weight": (1, 256),
    "visual_model.prompt_encoder.bbox_bottom_right_embeddings.weight": (1, 256),
    "visual_model.mask_decoder.iou_token.weight": (1, 256),
    "visual_model.mask_decoder.mask_tokens.weight": (4, 256),
    "visual_model.mask_decoder.transformer.layers.0.self_attn.q_proj.weight": (256, 256),
    "visual_model.mask_decoder.transformer.layers.0.self_attn.out_proj.weight": (256, 256),
    "visual_model.mask_decoder.transformer.layers.1.cross_attn_token_to_image.k_proj.weight": (128, 256),
    "visual_model.mask_decoder.transformer.layers.1.cross_attn_image_to_token.out_proj.weight": (256, 128),
    "visual_model.mask_decoder.transformer.layers.1.norm4.weight": (256,),
    "visual_model.mask_decoder.transformer.layers.0.mlp.layers.0.0.weight": (2048, 256),
    "visual_model.mask_decoder.transformer.layers.0.mlp.fc.weight": (256, 2048),
    "visual_model.mask_decoder.transformer.final_attn_token_to_image.v_proj.weight": (128, 256),
    "visual_model.mask_decoder.transformer.norm_final_attn.bias": (256,),
    "visual_model.mask_decoder.final_output_upscaling_layers.0.0.weight": (256, 64, 2, 2),
    "visual_model.mask_decoder.final_output_upscaling_layers.0.1.weight": (64,),
    "visual_model.mask_decoder.final_output_upscaling_layers.1.0.weight": (64, 32, 2, 2),
    "visual_model.mask_decoder.final_output_upscaling_layers.1.0.bias": (32,),
    "visual_model.mask_decoder.output_hypernetworks_mlps.3.layers.0.0.weight": (256, 256),
    "visual_model.mask_decoder.output_hypernetworks_mlps.3.layers.1.0.weight": (256, 256),
    "visual_model.mask_decoder.output_hypernetworks_mlps.3.fc.weight": (32, 256),
    "visual_model.mask_decoder.iou_prediction_head.layers.1.0.weight": (256, 256),
    "visual_model.mask_decoder.iou_prediction_head.fc.weight": (4, 256),
    "mm_extractor.beit3.encoder.layers.23.ffn.B.fc2.weight": (1024, 4096),
    "text_hidden_fcs.0.0.weight": (1024, 1024),
    "text_hidden_fcs.0.2.weight": (256, 1024),
}


def load_model_config(path: Path) -> EvfModelConfig:
    """A model YAML typed exactly as the CLI types `model.model`."""
    parser = ArgumentParser()
    parser.add_argument("--model", type=EvfModelConfig)
    return parser.instantiate(parser.parse_args(["--model", str(path)])).model


def meta_model(config: EvfModelConfig) -> EvfModel:
    with torch.device("meta"):
        return EvfModel(config)


def wave(shape: tuple[int, ...], phase: float, scale: float = 0.2) -> torch.Tensor:
    """Deterministic, irregular values that no RNG or torch version can change."""
    k = torch.arange(math.prod(shape), dtype=torch.float64)
    return (scale * torch.sin(0.7 * k + 0.013 * k * k + phase)).float().reshape(shape)


def fill_deterministic(backbone: EfficientSamImageBackbone) -> None:
    """Every tensor of the state dict set from `wave`; norm weights around 1, the gaussian matrix at unit scale."""
    norms = (nn.LayerNorm, nn.GroupNorm, LayerNorm2d)
    norm_weights = {f"{name}.weight" for name, module in backbone.named_modules() if isinstance(module, norms)}
    with torch.no_grad():
        for index, (name, tensor) in enumerate(backbone.state_dict().items()):
            gaussian = name.endswith("positional_encoding_gaussian_matrix")
            value = wave(tuple(tensor.shape), index, 1.0 if gaussian else 0.2)
            tensor.copy_(value + 1.0 if name in norm_weights else value)


@pytest.fixture(scope="module")
def effi_l_official_state() -> dict[str, torch.Size]:
    model = meta_model(load_model_config(REPO / "configs/model/evf_effi_sam_l.yaml"))
    return {key: value.shape for key, value in EFFI.to_official(model.state_dict()).items()}


@pytest.mark.parametrize(
    ("preset", "parameters"),
    [(EfficientSamBackboneConfig.vit_s, 26_413_028), (EfficientSamBackboneConfig.vit_t, 10_223_204)],
)
def test_published_sizes_build_on_meta(preset, parameters):
    """The official EfficientSam's counts: 278 state-dict keys for both sizes, the gaussian buffer included."""
    with torch.device("meta"):
        backbone = EfficientSamImageBackbone(preset())
    assert sum(p.numel() for p in backbone.parameters()) == parameters
    assert len(backbone.state_dict()) == 278
    assert "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix" in dict(backbone.named_buffers())


@pytest.mark.parametrize(
    ("name", "preset", "parameters", "keys"),
    [
        ("evf_effi_sam_l", EvfModelConfig.evf_effi_sam_l, 700_427_492, 1253),
        ("evf_effi_sam_b", EvfModelConfig.evf_effi_sam_b, 231_998_052, 773),
    ],
)
def test_full_size_model_files_are_the_presets_with_the_official_counts(name, preset, parameters, keys):
    config = load_model_config(REPO / "configs/model" / f"{name}.yaml")
    assert config == preset()
    model = meta_model(config)
    assert sum(p.numel() for p in model.parameters()) == parameters
    assert len(EFFI.to_official(model.state_dict())) == keys


def test_full_size_evf_effi_sam_l_has_the_official_keys_and_shapes(effi_l_official_state):
    for key, shape in OFFICIAL_SHAPES.items():
        assert tuple(effi_l_official_state[key]) == shape, key
    assert not [k for k in effi_l_official_state if "gamma" in k or "beta" in k]
    assert not [k for k in effi_l_official_state if "pixel_mean" in k or "pixel_std" in k]  # non-persistent upstream


def test_our_names_are_the_official_ones_under_image_backbone(effi_l_official_state):
    assert EFFI_RULES == ()
    for official in effi_l_official_state:
        ours = EFFI.our_key(official)
        assert EFFI.official_key(ours) == official
        if official.startswith("visual_model."):
            assert ours == "image_backbone." + official.removeprefix("visual_model.")


def test_tiny_model_round_trips_through_official_names_strictly():
    torch.manual_seed(0)
    config = load_model_config(REPO / "configs/model/evf_effi_tiny.yaml")
    model = EvfModel(config)
    official = EFFI.to_official(model.state_dict())
    assert "visual_model.prompt_encoder.bbox_bottom_right_embeddings.weight" in official
    torch.manual_seed(1)
    fresh = EvfModel(config)
    fresh.load_state_dict(EFFI.from_official(official), strict=True)
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_sdpa_attention_is_the_eager_softmax_with_head_dim_scale():
    """Both attention kinds: softmax(q k^T / sqrt(head_dim)) v per head, as upstream computes it."""
    torch.manual_seed(0)
    backbone = EfficientSamImageBackbone(EfficientSamBackboneConfig.tiny())
    attention = backbone.image_encoder.blocks[0].attn
    x = torch.randn(2, 5, 32)
    q, k, v = attention.qkv(x).view(2, 5, 3, 2, 16).permute(2, 0, 3, 1, 4)
    eager = ((q @ k.transpose(-2, -1)) / math.sqrt(16)).softmax(-1) @ v
    torch.testing.assert_close(attention(x), attention.proj(eager.transpose(1, 2).reshape(2, 5, 32)))

    cross = backbone.mask_decoder.transformer.final_attn_token_to_image
    assert isinstance(cross, AttentionForTwoWayAttentionBlock) and cross.q_proj.out_features == 16
    tokens, image = torch.randn(2, 6, 32), torch.randn(2, 9, 32)

    def heads(t: torch.Tensor) -> torch.Tensor:
        return t.view(2, -1, 2, 8).transpose(1, 2)

    scores = heads(cross.q_proj(tokens)) @ heads(cross.k_proj(image)).transpose(-2, -1) / math.sqrt(8)
    eager = (scores.softmax(-1) @ heads(cross.v_proj(image))).transpose(1, 2).reshape(2, 6, 16)
    torch.testing.assert_close(cross(tokens, image, image), cross.out_proj(eager))


def test_positions_drop_cls_and_are_resized_from_the_pretraining_grid():
    torch.manual_seed(0)
    encoder = EfficientSamImageBackbone(EfficientSamBackboneConfig.tiny()).image_encoder
    assert encoder.pos_embed.shape == (1, 1 + 8 * 8, 32)
    with torch.no_grad():
        encoder.pos_embed[:, 1:] = 0.25
        encoder.pos_embed[:, 0] = 99.0  # the [CLS] row never reaches the grid
    torch.testing.assert_close(encoder.positions(16, 16), torch.full((1, 16, 16, 32), 0.25))
    with torch.no_grad():
        encoder.pos_embed.normal_()
    torch.testing.assert_close(encoder.positions(8, 8), encoder.pos_embed[:, 1:].reshape(1, 8, 8, 32))
    resized = encoder.positions(16, 16)
    assert resized.shape == (1, 16, 16, 32) and not torch.allclose(resized[:, ::2, ::2], encoder.positions(8, 8))
    with pytest.raises(ValueError, match="128"):
        encoder(torch.randn(1, 3, 64, 64))


# The official EfficientSAM modules (EVF-SAM's model/EfficientSAM at 9935dc5, tiny dims, pos grid 8x8) run on
# the weights of `fill_deterministic` and the inputs below: the image embedding and the low-res logits of the
# official EVF call, `mask_decoder(image[1:2], get_dense_pe(), prompts[None], multimask_output)` (with True,
# the mask of top predicted IoU). Ours differed from those by at most 2.5e-6 (encoder) and 2.4e-7 (logits).
GOLDEN_EMBEDDING = {(0, 0, 0, 0): 0.19308147, (0, 2, 0, 0): 1.83564401, (1, 5, 7, 9): -2.10464239}
GOLDEN_LOGITS = {
    False: {(0, 0, 0): 0.25186872, (1, 0, 0): 0.20877038, (2, 31, 40): -0.00458236, (0, 31, 40): 0.05016296},
    True: {(0, 0, 0): -0.11977904, (2, 0, 0): -0.18784186, (1, 31, 40): -0.08264532},
}
GOLDEN_ABS_MEAN = {False: [0.10835471, 0.08618817, 0.08389764], True: [0.04467410, 0.04186980, 0.06214759]}


def test_matches_the_official_modules_on_pinned_weights():
    backbone = EfficientSamImageBackbone(EfficientSamBackboneConfig.tiny()).eval()
    fill_deterministic(backbone)
    pixels, prompts = wave((2, 3, 128, 128), 0.5, 1.0), wave((3, 1, 32), 1.5, 1.0)
    with torch.no_grad():
        features = backbone.encode(pixels)
        assert features.embedding.shape == (2, 32, 16, 16)
        for index, value in GOLDEN_EMBEDDING.items():
            torch.testing.assert_close(features.embedding[index].item(), value, atol=2e-5, rtol=1e-5)
        for multimask in (False, True):
            logits = backbone.decode(features, torch.tensor([1, 1, 1]), prompts, multimask_output=multimask)
            assert logits.shape == (3, 64, 64)
            for index, value in GOLDEN_LOGITS[multimask].items():
                torch.testing.assert_close(logits[index].item(), value, atol=2e-6, rtol=1e-5)
            expected = torch.tensor(GOLDEN_ABS_MEAN[multimask])
            torch.testing.assert_close(logits.abs().mean(dim=(1, 2)), expected, atol=2e-6, rtol=1e-5)


def test_decode_is_the_official_per_image_call_for_a_mixed_batch():
    """Prompts of two images at once = each image's prompts as [1, N_i, 1, C] with the image tiled (EVF's loop)."""
    torch.manual_seed(0)
    backbone = EfficientSamImageBackbone(EfficientSamBackboneConfig.tiny(image_size=64)).eval()
    features = backbone.encode(torch.randn(2, 3, 64, 64))
    prompts = torch.randn(5, 1, 32)
    image_index = torch.tensor([1, 0, 1, 1, 0])
    pe = backbone.prompt_encoder.get_dense_pe()
    assert pe.shape == (1, 32, 8, 8)
    for multimask in (False, True):
        got = backbone.decode(features, image_index, prompts, multimask_output=multimask)
        assert got.shape == (5, 32, 32)
        for image in (0, 1):
            mine = (image_index == image).nonzero().flatten()
            masks, iou = backbone.mask_decoder(
                features.embedding[image : image + 1], pe, prompts[mine][None], multimask
            )
            assert masks.shape == (len(mine), 3 if multimask else 1, 32, 32)
            best = iou.argsort(dim=-1, descending=True)[:, 0] if multimask else torch.zeros_like(mine)
            torch.testing.assert_close(got[mine], masks[torch.arange(len(mine)), best])


def test_tiny_forward_backward_shares_each_image_between_its_prompts():
    torch.manual_seed(0)
    backbone = EfficientSamImageBackbone(EfficientSamBackboneConfig.tiny(image_size=64))
    assert backbone.no_mask_embed is None
    features = backbone.encode(torch.randn(2, 3, 64, 64))
    assert isinstance(features, ImageFeatures) and features.high_res == []
    prompts = torch.randn(3, 1, 32, requires_grad=True)
    logits = backbone.decode(features, torch.tensor([0, 0, 1]), prompts)
    assert logits.shape == (3, 32, 32)
    assert not torch.allclose(logits[0], logits[1])
    again = backbone.decode(features, torch.tensor([0]), prompts[1:2])
    torch.testing.assert_close(again[0], logits[1])
    logits.sum().backward()
    assert prompts.grad.abs().sum() > 0
    assert backbone.image_encoder.pos_embed.grad.abs().sum() > 0
    assert backbone.mask_decoder.final_output_upscaling_layers[0][1].weight.grad.abs().sum() > 0
    unused = list(backbone.prompt_encoder.parameters())
    assert len(unused) == 4 and all(p.grad is None for p in unused)


def test_default_freeze_policy_trains_mask_decoder_beit3_and_projector_only():
    torch.manual_seed(0)
    model = EvfModel(load_model_config(REPO / "configs/model/evf_effi_tiny.yaml"))
    apply_trainable(model, TrainableParts())
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    decoder = {name for name, _ in model.named_parameters() if name.startswith("image_backbone.mask_decoder.")}
    assert trainable == decoder | {
        name for name, _ in model.named_parameters() if name.startswith(("prompt_encoder.", "projector."))
    }
    logits = model(
        torch.randn(2, 3, 128, 128),
        torch.randn(2, 3, model.config.prompt_encoder.image_size, model.config.prompt_encoder.image_size),
        torch.randint(3, 256, (3, 6)),
        torch.ones(3, 6, dtype=torch.bool),
        torch.tensor([0, 1, 1]),
    )
    logits.square().mean().backward()
    with_grad = {name for name, p in model.named_parameters() if p.grad is not None}
    assert with_grad <= trainable
    # the IoU head is the only decoder part the single-mask output does not reach
    assert decoder - with_grad == {n for n in decoder if ".iou_prediction_head." in n}
    assert {"projector.0.weight", "projector.2.weight", "prompt_encoder.beit3.text_embed.weight"} <= with_grad
    assert not any(
        name.startswith(("image_backbone.image_encoder.", "image_backbone.prompt_encoder.")) for name in with_grad
    )


def test_tiny_yaml_runs_forward_and_backward_end_to_end():
    config = load_model_config(REPO / "configs/model/evf_effi_tiny.yaml")
    assert config.image_backbone == EfficientSamBackboneConfig.tiny()
    assert config.prompt_encoder == load_model_config(REPO / "configs/model/evf_tiny.yaml").prompt_encoder
    torch.manual_seed(0)
    model = EvfModel(config)
    assert sum(p.numel() for p in model.image_backbone.parameters()) == 84_768
    attention_mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], dtype=torch.bool)
    logits = model(
        torch.randn(2, 3, 128, 128),
        torch.randn(2, 3, model.config.prompt_encoder.image_size, model.config.prompt_encoder.image_size),
        torch.randint(3, 256, (3, 6)),
        attention_mask,
        torch.tensor([0, 1, 1]),
    )
    assert logits.shape == (3, 64, 64) and torch.isfinite(logits).all()
    logits.square().mean().backward()
    assert model.projector[0].weight.grad.abs().sum() > 0
    assert model.image_backbone.image_encoder.patch_embed.proj.weight.grad.abs().sum() > 0


def test_config_rejects_sizes_the_network_cannot_have():
    with pytest.raises(ValueError, match="num_heads"):
        EfficientSamBackboneConfig(width=100, num_heads=3)
    with pytest.raises(ValueError, match="patch_size"):
        EfficientSamBackboneConfig(image_size=1000)
    assert EfficientSamBackboneConfig.vit_s().embedding_size == 64
