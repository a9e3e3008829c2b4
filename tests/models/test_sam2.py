"""SAM-2 backbone and EVF-SAM2: official sizes, key names and shapes, the image path, mask choice, freezing."""

import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from jsonargparse import ArgumentParser
from transformers.models.sam2.modeling_sam2 import Sam2Model

from evf_lightning.hub.official_names import SAM2_RULES, name_map
from evf_lightning.models.beit3 import Beit3Config
from evf_lightning.models.evf import EvfModel, EvfModelConfig
from evf_lightning.models.image_features import ImageFeatures
from evf_lightning.models.prompt_encoder import Beit3PromptConfig
from evf_lightning.models.sam2 import PointEmbeddings, Sam2BackboneConfig, Sam2ImageBackbone
from evf_lightning.training.trainable import TrainableParts, apply_trainable

SAM2 = name_map("sam2")
REPO = Path(__file__).resolve().parents[2]

# One key per SAM-2 name-map rule, plus the memory keys kept for export, with the shapes EVF-SAM2 has
# (reference/checkpoints.md §4; the same keys and shapes the official SAM2Base builds for Hiera-L).
OFFICIAL_SHAPES = {
    "visual_model.image_encoder.trunk.blocks.2.norm1.weight": (144,),
    "visual_model.image_encoder.trunk.blocks.2.norm2.weight": (288,),
    "visual_model.image_encoder.trunk.blocks.44.mlp.layers.0.weight": (4608, 1152),
    "visual_model.image_encoder.trunk.blocks.8.mlp.layers.1.weight": (576, 2304),
    "visual_model.image_encoder.trunk.patch_embed.proj.weight": (144, 3, 7, 7),
    "visual_model.image_encoder.trunk.pos_embed": (1, 144, 7, 7),
    "visual_model.image_encoder.trunk.pos_embed_window": (1, 144, 8, 8),
    "visual_model.image_encoder.trunk.blocks.2.attn.qkv.weight": (864, 144),
    "visual_model.image_encoder.trunk.blocks.2.attn.proj.weight": (288, 288),
    "visual_model.image_encoder.trunk.blocks.2.proj.weight": (288, 144),
    "visual_model.image_encoder.trunk.blocks.8.attn.qkv.weight": (1728, 288),
    "visual_model.image_encoder.trunk.blocks.44.proj.weight": (1152, 576),
    "visual_model.image_encoder.trunk.blocks.47.attn.qkv.weight": (3456, 1152),
    "visual_model.image_encoder.neck.convs.0.conv.weight": (256, 1152, 1, 1),
    "visual_model.image_encoder.neck.convs.3.conv.weight": (256, 144, 1, 1),
    "visual_model.image_encoder.neck.convs.3.conv.bias": (256,),
    "visual_model.sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix": (2, 128),
    "visual_model.sam_prompt_encoder.point_embeddings.3.weight": (1, 256),
    "visual_model.sam_prompt_encoder.mask_downscaling.0.weight": (4, 1, 2, 2),
    "visual_model.sam_prompt_encoder.mask_downscaling.1.weight": (4,),
    "visual_model.sam_prompt_encoder.mask_downscaling.3.weight": (16, 4, 2, 2),
    "visual_model.sam_prompt_encoder.mask_downscaling.4.bias": (16,),
    "visual_model.sam_prompt_encoder.mask_downscaling.6.weight": (256, 16, 1, 1),
    "visual_model.sam_prompt_encoder.no_mask_embed.weight": (1, 256),
    "visual_model.sam_prompt_encoder.not_a_point_embed.weight": (1, 256),
    "visual_model.sam_mask_decoder.transformer.layers.1.norm4.weight": (256,),
    "visual_model.sam_mask_decoder.transformer.layers.0.mlp.layers.0.weight": (2048, 256),
    "visual_model.sam_mask_decoder.transformer.layers.0.mlp.layers.1.weight": (256, 2048),
    "visual_model.sam_mask_decoder.transformer.layers.0.self_attn.out_proj.weight": (256, 256),
    "visual_model.sam_mask_decoder.transformer.layers.1.cross_attn_token_to_image.out_proj.weight": (256, 128),
    "visual_model.sam_mask_decoder.transformer.layers.1.cross_attn_image_to_token.out_proj.weight": (256, 128),
    "visual_model.sam_mask_decoder.transformer.final_attn_token_to_image.out_proj.weight": (256, 128),
    "visual_model.sam_mask_decoder.transformer.norm_final_attn.weight": (256,),
    "visual_model.sam_mask_decoder.output_upscaling.0.weight": (256, 64, 2, 2),
    "visual_model.sam_mask_decoder.output_upscaling.1.weight": (64,),
    "visual_model.sam_mask_decoder.output_upscaling.3.weight": (64, 32, 2, 2),
    "visual_model.sam_mask_decoder.output_hypernetworks_mlps.3.layers.0.weight": (256, 256),
    "visual_model.sam_mask_decoder.output_hypernetworks_mlps.3.layers.1.weight": (256, 256),
    "visual_model.sam_mask_decoder.output_hypernetworks_mlps.3.layers.2.weight": (32, 256),
    "visual_model.sam_mask_decoder.iou_prediction_head.layers.0.weight": (256, 256),
    "visual_model.sam_mask_decoder.iou_prediction_head.layers.1.weight": (256, 256),
    "visual_model.sam_mask_decoder.iou_prediction_head.layers.2.weight": (4, 256),
    "visual_model.sam_mask_decoder.pred_obj_score_head.layers.0.weight": (256, 256),
    "visual_model.sam_mask_decoder.pred_obj_score_head.layers.1.weight": (256, 256),
    "visual_model.sam_mask_decoder.pred_obj_score_head.layers.2.weight": (1, 256),
    "visual_model.sam_mask_decoder.obj_score_token.weight": (1, 256),
    "visual_model.sam_mask_decoder.conv_s0.weight": (32, 256, 1, 1),
    "visual_model.sam_mask_decoder.conv_s1.weight": (64, 256, 1, 1),
    "visual_model.sam_mask_decoder.iou_token.weight": (1, 256),
    "visual_model.sam_mask_decoder.mask_tokens.weight": (4, 256),
    "visual_model.no_mem_embed": (1, 1, 256),
    "visual_model.no_mem_pos_enc": (1, 1, 256),
    "visual_model.no_obj_ptr": (1, 256),
    "visual_model.maskmem_tpos_enc": (7, 1, 1, 64),
    "visual_model.mask_downsample.weight": (1, 1, 4, 4),
    "visual_model.obj_ptr_proj.layers.0.weight": (256, 256),
    "visual_model.obj_ptr_proj.layers.1.weight": (256, 256),
    "visual_model.obj_ptr_proj.layers.2.weight": (256, 256),
    "visual_model.memory_attention.layers.3.self_attn.out_proj.weight": (256, 256),
    "visual_model.memory_attention.layers.0.cross_attn_image.out_proj.weight": (256, 256),
    "visual_model.memory_attention.layers.0.cross_attn_image.k_proj.weight": (256, 64),
    "visual_model.memory_attention.layers.0.cross_attn_image.v_proj.weight": (256, 64),
    "visual_model.memory_attention.layers.2.norm3.weight": (256,),
    "visual_model.memory_attention.layers.0.linear1.weight": (2048, 256),
    "visual_model.memory_attention.norm.weight": (256,),
    "visual_model.memory_encoder.mask_downsampler.encoder.0.weight": (4, 1, 3, 3),
    "visual_model.memory_encoder.mask_downsampler.encoder.1.weight": (4,),
    "visual_model.memory_encoder.mask_downsampler.encoder.3.weight": (16, 4, 3, 3),
    "visual_model.memory_encoder.mask_downsampler.encoder.4.weight": (16,),
    "visual_model.memory_encoder.mask_downsampler.encoder.6.weight": (64, 16, 3, 3),
    "visual_model.memory_encoder.mask_downsampler.encoder.7.weight": (64,),
    "visual_model.memory_encoder.mask_downsampler.encoder.9.weight": (256, 64, 3, 3),
    "visual_model.memory_encoder.mask_downsampler.encoder.10.bias": (256,),
    "visual_model.memory_encoder.mask_downsampler.encoder.12.weight": (256, 256, 1, 1),
    "visual_model.memory_encoder.pix_feat_proj.weight": (256, 256, 1, 1),
    "visual_model.memory_encoder.fuser.layers.0.weight": (256,),
    "visual_model.memory_encoder.fuser.layers.1.dwconv.weight": (256, 1, 7, 7),
    "visual_model.memory_encoder.fuser.layers.1.norm.weight": (256,),
    "visual_model.memory_encoder.fuser.layers.0.pwconv1.weight": (1024, 256),
    "visual_model.memory_encoder.fuser.layers.0.pwconv2.weight": (256, 1024),
    "visual_model.memory_encoder.out_proj.weight": (64, 256, 1, 1),
    "mm_extractor.beit3.encoder.layers.23.ffn.B.fc2.weight": (1024, 4096),
    "text_hidden_fcs.0.2.weight": (256, 1024),
}
# The official names of SAM-2's video-memory parts (157 keys for every size).
MEMORY_PREFIXES = (
    "visual_model.memory_attention.",
    "visual_model.memory_encoder.",
    "visual_model.mask_downsample.",
    "visual_model.obj_ptr_proj.",
    "visual_model.no_mem_pos_enc",
    "visual_model.no_obj_ptr",
    "visual_model.maskmem_tpos_enc",
)


def load_model_config(path: Path) -> EvfModelConfig:
    """A model YAML typed exactly as the CLI types `model.model`."""
    parser = ArgumentParser()
    parser.add_argument("--model", type=EvfModelConfig)
    return parser.instantiate(parser.parse_args(["--model", str(path)])).model


def first_rule(key: str) -> tuple[str, str]:
    """The rule of the full sam2 table (its own rules, then the shared ones) that renames an official key."""
    for rule in SAM2.rules:
        pattern = re.escape(rule[0]).replace(r"\{i\}", r"\d+").replace(r"\{n\}", r"\d+")
        if re.match(pattern, key):
            return rule
    raise AssertionError(key)


@pytest.fixture(scope="module")
def full_size_official_state() -> dict[str, torch.Size]:
    with torch.device("meta"):
        model = EvfModel(EvfModelConfig.evf_sam2())
    assert sum(p.numel() for p in model.parameters()) == 898_444_594
    assert sum(p.numel() for p in model.image_backbone.parameters()) == 224_430_130  # Hiera-L SAM-2: 224.4M
    return {key: value.shape for key, value in SAM2.to_official(model.state_dict()).items()}


@pytest.mark.parametrize(
    ("preset", "parameters", "keys"),
    [
        (Sam2BackboneConfig.hiera_tiny, 38_945_986, 468),
        (Sam2BackboneConfig.hiera_small, 46_043_842, 516),
        (Sam2BackboneConfig.hiera_base_plus, 80_833_666, 612),
        (Sam2BackboneConfig.hiera_large, 224_430_130, 900),
    ],
)
def test_published_sizes_build_on_meta(preset, parameters, keys):
    """Counts of the official SAM2Base of each size (its 157 memory keys included)."""
    with torch.device("meta"):
        backbone = Sam2ImageBackbone(preset())
    assert sum(p.numel() for p in backbone.parameters()) == parameters
    state = backbone.state_dict()
    assert len(state) == keys
    memory = [k for k in state if k.split(".")[0] in Sam2ImageBackbone.MEMORY_PARTS]
    assert len(memory) == 157


def test_full_size_evf_sam2_has_the_official_keys_and_shapes(full_size_official_state):
    assert len(full_size_official_state) == 1875
    for key, shape in OFFICIAL_SHAPES.items():
        assert tuple(full_size_official_state[key]) == shape, key


def test_hiera_tiny_with_beit3_base_has_the_official_key_count():
    """The official code's other wired size: sam_scale tiny with BEiT-3-B, 963 keys (checkpoints.md §1)."""
    config = EvfModelConfig(Sam2BackboneConfig.hiera_tiny(), Beit3PromptConfig(Beit3Config.base()))
    with torch.device("meta"):
        model = EvfModel(config)
    assert len(SAM2.to_official(model.state_dict())) == 963


def test_every_sam2_rule_renames_some_key(full_size_official_state):
    used = {first_rule(key) for key in full_size_official_state}
    assert [rule for rule in SAM2_RULES if rule not in used] == []


def test_map_is_a_bijection_both_ways(full_size_official_state):
    official = list(full_size_official_state)
    ours = [SAM2.our_key(k) for k in official]
    assert len(set(ours)) == len(ours)
    assert [SAM2.official_key(k) for k in ours] == official
    assert not [k for k in official if "gamma" in k or "beta" in k]


def test_memory_keys_are_kept_and_frozen(full_size_official_state):
    memory = [k for k in full_size_official_state if k.startswith(MEMORY_PREFIXES)]
    assert len(memory) == 157
    backbone = Sam2ImageBackbone(Sam2BackboneConfig.tiny())
    frozen = {name for name, p in backbone.named_parameters() if not p.requires_grad}
    assert frozen == {
        name for name, _ in backbone.named_parameters() if name.split(".")[0] in Sam2ImageBackbone.MEMORY_PARTS
    }
    assert type(backbone.memory_attention).__name__ == "Sam2VideoMemoryAttention"
    assert type(backbone.memory_encoder).__name__ == "Sam2VideoMemoryEncoder"


def test_tiny_model_round_trips_through_official_names_strictly():
    torch.manual_seed(0)
    config = load_model_config(REPO / "configs/model/evf_sam2_tiny.yaml")
    model = EvfModel(config)
    official = SAM2.to_official(model.state_dict())
    assert "visual_model.memory_encoder.fuser.layers.0.weight" in official
    assert "visual_model.sam_prompt_encoder.point_embeddings.0.weight" in official
    torch.manual_seed(1)
    fresh = EvfModel(config)
    fresh.load_state_dict(SAM2.from_official(official), strict=True)
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_point_embeddings_keep_four_tables_and_read_as_one():
    torch.manual_seed(0)
    backbone = Sam2ImageBackbone(Sam2BackboneConfig.tiny())
    table = backbone.prompt_encoder.point_embed
    assert isinstance(table, PointEmbeddings)
    assert table.weight.shape == (4, 32)
    labels = torch.tensor([[3, 0, 2]])
    torch.testing.assert_close(table(labels)[0], table.weight[[3, 0, 2]])
    # transformers' own point path runs on it: a box is its corners plus point types 2 and 3
    boxes = torch.tensor([[[10.0, 20.0, 60.0, 90.0]]])
    sparse, _ = backbone.prompt_encoder(None, None, boxes, None)
    corners = backbone.prompt_encoder.shared_embedding(boxes.view(1, 1, 2, 2) + 0.5, (128, 128))
    torch.testing.assert_close(sparse[0, 0, 1], corners[0, 0, 1] + table[3].weight[0])


def test_image_path_matches_transformers_sam2_model():
    """encode = Sam2Model.get_image_embeddings (levels, conv_s0/s1, no-memory embedding); same dense encoding."""
    torch.manual_seed(0)
    config = Sam2BackboneConfig.tiny()
    backbone = Sam2ImageBackbone(config).eval()
    for parameter in backbone.parameters():  # transformers zero-inits no_memory_embedding and pos_embed
        parameter.data.normal_(0, 0.2)
    reference = Sam2Model(config.to_hf()).eval()
    state = {k: v for k, v in backbone.state_dict().items() if k.split(".")[0] not in Sam2ImageBackbone.MEMORY_PARTS}
    state = {k.replace("image_encoder.", "vision_encoder.", 1): v for k, v in state.items()}
    state["prompt_encoder.point_embed.weight"] = torch.cat(
        [state.pop(f"prompt_encoder.point_embed.{i}.weight") for i in range(4)]
    )
    state["shared_image_embedding.positional_embedding"] = state["prompt_encoder.shared_embedding.positional_embedding"]
    reference.load_state_dict(state, strict=True)
    pixels = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        features = backbone.encode(pixels)
        expected = reference.get_image_embeddings(pixels)
        assert [tuple(level.shape) for level in expected] == [(2, 4, 32, 32), (2, 8, 16, 16), (2, 32, 8, 8)]
        torch.testing.assert_close(features.high_res, expected[:2])
        torch.testing.assert_close(features.embedding, expected[2])
        torch.testing.assert_close(
            backbone.dense_positional_encoding(), reference.get_image_wide_positional_embeddings()
        )


def test_tiny_forward_backward_shares_each_image_between_its_prompts():
    torch.manual_seed(0)
    backbone = Sam2ImageBackbone(Sam2BackboneConfig.tiny(image_size=64))
    features = backbone.encode(torch.randn(2, 3, 64, 64))
    assert features.embedding.shape == (2, 32, 4, 4)
    assert [tuple(level.shape) for level in features.high_res] == [(2, 4, 16, 16), (2, 8, 8, 8)]
    prompts = torch.randn(3, 1, 32, requires_grad=True)
    logits = backbone.decode(features, torch.tensor([0, 0, 1]), prompts)
    assert logits.shape == (3, 16, 16)
    assert not torch.allclose(logits[0], logits[1])
    again = backbone.decode(features, torch.tensor([0]), prompts[1:2])
    torch.testing.assert_close(again[0], logits[1])
    logits.sum().backward()
    assert prompts.grad is not None and prompts.grad.abs().sum() > 0
    assert backbone.mask_decoder.upscale_conv2.weight.grad.abs().sum() > 0  # the high-res skips reach the masks
    assert backbone.mask_decoder.conv_s0.weight.grad.abs().sum() > 0
    memory = [p for name, p in backbone.named_parameters() if name.split(".")[0] in Sam2ImageBackbone.MEMORY_PARTS]
    assert memory and all(p.grad is None for p in memory)


def unstable_token_zero_backbone(**overrides) -> tuple[Sam2ImageBackbone, ImageFeatures, torch.Tensor]:
    """A tiny backbone whose token-0 mask is ~0 everywhere, so its stability is 0."""
    torch.manual_seed(0)
    backbone = Sam2ImageBackbone(replace(Sam2BackboneConfig.tiny(image_size=64), **overrides))
    with torch.no_grad():
        backbone.mask_decoder.output_hypernetworks_mlps[0].proj_out.weight.mul_(1e-6)
        backbone.mask_decoder.output_hypernetworks_mlps[0].proj_out.bias.mul_(1e-6)
    features = backbone.encode(torch.randn(1, 3, 64, 64))
    return backbone, features, torch.randn(2, 1, 32)


def test_multimask_output_keeps_the_mask_with_best_predicted_iou():
    backbone, features, prompts = unstable_token_zero_backbone()
    backbone.eval()
    index = torch.tensor([0, 0])
    chosen = backbone.decode(features, index, prompts, multimask_output=True)
    per_prompt = features[index]
    masks, iou, _, _ = backbone.mask_decoder(
        per_prompt.embedding,
        backbone.dense_positional_encoding().expand(2, -1, -1, -1),
        prompts.unsqueeze(1),
        backbone.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(2, -1, 4, 4),
        True,
        per_prompt.high_res,
    )
    best = iou[:, 0].argmax(-1)
    torch.testing.assert_close(chosen, masks[torch.arange(2), 0, best])
    assert chosen.abs().max() > 1e-2


def test_older_mask_choice_falls_back_to_best_of_three_in_eval_only():
    """evf-sam2's code: single mask asked for, eval-mode decoder swaps an unstable token-0 mask (§6)."""
    backbone, features, prompts = unstable_token_zero_backbone()
    index = torch.tensor([0, 0])
    best_of_three = backbone.eval().decode(features, index, prompts, multimask_output=True)
    torch.testing.assert_close(backbone.decode(features, index, prompts), best_of_three)
    assert backbone.train().decode(features, index, prompts).abs().max() < 1e-3  # token 0 while training

    plain, features, prompts = unstable_token_zero_backbone(dynamic_multimask_via_stability=False)
    assert plain.eval().decode(features, index, prompts).abs().max() < 1e-3


def test_sam2_recipe_trains_only_beit3_and_the_projector():
    """The released EVF-SAM2 recipe: everything in SAM-2 frozen, BEiT-3 and the projector trained."""
    torch.manual_seed(0)
    model = EvfModel(load_model_config(REPO / "configs/model/evf_sam2_tiny.yaml"))
    apply_trainable(model, TrainableParts(mask_decoder=False, no_mask_embed=False))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {
        name for name, _ in model.named_parameters() if name.startswith(("prompt_encoder.", "projector."))
    }
    logits = model(
        torch.randn(2, 3, 128, 128),
        torch.randn(2, 3, model.config.prompt_encoder.image_size, model.config.prompt_encoder.image_size),
        torch.randint(3, 256, (3, 6)),
        torch.ones(3, 6, dtype=torch.bool),
        torch.tensor([0, 0, 1]),
    )
    logits.sum().backward()
    with_grad = {name for name, p in model.named_parameters() if p.grad is not None}
    assert with_grad <= trainable
    assert {"projector.0.weight", "projector.2.weight", "prompt_encoder.beit3.text_embed.weight"} <= with_grad
    assert not any(name.startswith("image_backbone.") for name in with_grad)


def test_tiny_yaml_runs_forward_and_backward_end_to_end():
    config = load_model_config(REPO / "configs/model/evf_sam2_tiny.yaml")
    assert config.image_backbone == Sam2BackboneConfig.tiny()
    assert config.prompt_encoder == load_model_config(REPO / "configs/model/evf_tiny.yaml").prompt_encoder
    torch.manual_seed(0)
    model = EvfModel(config)
    assert 300_000 < sum(p.numel() for p in model.image_backbone.parameters()) < 400_000
    attention_mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], dtype=torch.bool)
    logits = model(
        torch.randn(2, 3, 128, 128),
        torch.randn(2, 3, model.config.prompt_encoder.image_size, model.config.prompt_encoder.image_size),
        torch.randint(3, 256, (3, 6)),
        attention_mask,
        torch.tensor([0, 1, 1]),
    )
    assert logits.shape == (3, 32, 32) and torch.isfinite(logits).all()
    logits.square().mean().backward()
    assert model.projector[0].weight.grad.abs().sum() > 0
    assert model.image_backbone.image_encoder.backbone.patch_embed.projection.weight.grad.abs().sum() > 0


def test_evf_sam2_yaml_is_the_published_preset():
    preset = EvfModelConfig.evf_sam2()
    assert load_model_config(REPO / "configs/model/evf_sam2.yaml") == preset
    assert (preset.image_backbone.resize, preset.multimask_output) == ("longest_then_stretch", False)
    multitask = EvfModelConfig.evf_sam2(multitask=True)
    assert (multitask.image_backbone.resize, multitask.multimask_output) == ("stretch", True)
    assert multitask.image_backbone.stages == preset.image_backbone.stages == [2, 6, 36, 4]
