"""The name map to the official EVF-SAM checkpoint keys (reference/checkpoints.md §1-§3)."""

import pytest
import torch

from evf_lightning.hub.official_names import UnmappedKeyError, name_map
from evf_lightning.models.evf import EvfModel, EvfModelConfig

SAM = name_map("sam")

# One key per name-map rule (and the plain prefixes), with the shape the official EVF-SAM has.
OFFICIAL_SHAPES = {
    "visual_model.image_encoder.patch_embed.proj.weight": (1280, 3, 16, 16),
    "visual_model.image_encoder.pos_embed": (1, 64, 64, 1280),
    "visual_model.image_encoder.blocks.0.norm1.weight": (1280,),
    "visual_model.image_encoder.blocks.0.attn.qkv.weight": (3840, 1280),
    "visual_model.image_encoder.blocks.0.attn.rel_pos_h": (27, 80),
    "visual_model.image_encoder.blocks.7.attn.rel_pos_w": (127, 80),
    "visual_model.image_encoder.blocks.31.mlp.lin2.weight": (1280, 5120),
    "visual_model.image_encoder.neck.0.weight": (256, 1280, 1, 1),
    "visual_model.image_encoder.neck.1.bias": (256,),
    "visual_model.image_encoder.neck.2.weight": (256, 256, 3, 3),
    "visual_model.image_encoder.neck.3.weight": (256,),
    "visual_model.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix": (2, 128),
    "visual_model.prompt_encoder.point_embeddings.3.weight": (1, 256),
    "visual_model.prompt_encoder.not_a_point_embed.weight": (1, 256),
    "visual_model.prompt_encoder.no_mask_embed.weight": (1, 256),
    "visual_model.prompt_encoder.mask_downscaling.0.weight": (4, 1, 2, 2),
    "visual_model.prompt_encoder.mask_downscaling.1.weight": (4,),
    "visual_model.prompt_encoder.mask_downscaling.3.weight": (16, 4, 2, 2),
    "visual_model.prompt_encoder.mask_downscaling.4.bias": (16,),
    "visual_model.prompt_encoder.mask_downscaling.6.weight": (256, 16, 1, 1),
    "visual_model.mask_decoder.iou_token.weight": (1, 256),
    "visual_model.mask_decoder.mask_tokens.weight": (4, 256),
    "visual_model.mask_decoder.transformer.layers.1.self_attn.out_proj.weight": (256, 256),
    "visual_model.mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight": (128, 256),
    "visual_model.mask_decoder.transformer.layers.0.cross_attn_image_to_token.out_proj.weight": (256, 128),
    "visual_model.mask_decoder.transformer.layers.0.norm4.weight": (256,),
    "visual_model.mask_decoder.transformer.layers.1.mlp.lin1.weight": (2048, 256),
    "visual_model.mask_decoder.transformer.final_attn_token_to_image.k_proj.weight": (128, 256),
    "visual_model.mask_decoder.transformer.norm_final_attn.weight": (256,),
    "visual_model.mask_decoder.output_upscaling.0.weight": (256, 64, 2, 2),
    "visual_model.mask_decoder.output_upscaling.1.weight": (64,),
    "visual_model.mask_decoder.output_upscaling.3.weight": (64, 32, 2, 2),
    "visual_model.mask_decoder.output_hypernetworks_mlps.3.layers.0.weight": (256, 256),
    "visual_model.mask_decoder.output_hypernetworks_mlps.3.layers.1.weight": (256, 256),
    "visual_model.mask_decoder.output_hypernetworks_mlps.3.layers.2.weight": (32, 256),
    "visual_model.mask_decoder.iou_prediction_head.layers.2.weight": (4, 256),
    "mm_extractor.beit3.text_embed.weight": (64010, 1024),
    "mm_extractor.beit3.vision_embed.proj.weight": (1024, 3, 16, 16),
    "mm_extractor.beit3.vision_embed.cls_token": (1, 1, 1024),
    "mm_extractor.beit3.vision_embed.mask_token": (1, 1, 1024),
    "mm_extractor.beit3.encoder.embed_positions.A.weight": (199, 1024),
    "mm_extractor.beit3.encoder.embed_positions.B.weight": (1024, 1024),
    "mm_extractor.beit3.encoder.layers.23.self_attn.q_proj.B.weight": (1024, 1024),
    "mm_extractor.beit3.encoder.layers.0.self_attn.inner_attn_ln.A.weight": (1024,),
    "mm_extractor.beit3.encoder.layers.0.ffn.A.fc1.weight": (4096, 1024),
    "mm_extractor.beit3.encoder.layers.0.ffn.B.ffn_layernorm.weight": (4096,),
    "mm_extractor.beit3.encoder.layer_norm.B.bias": (1024,),
    "text_hidden_fcs.0.0.weight": (1024, 1024),
    "text_hidden_fcs.0.0.bias": (1024,),
    "text_hidden_fcs.0.2.weight": (256, 1024),
    "text_hidden_fcs.0.2.bias": (256,),
}


@pytest.fixture(scope="module")
def full_size_official_state() -> dict[str, torch.Size]:
    with torch.device("meta"):
        model = EvfModel(EvfModelConfig.evf_sam())
    assert sum(p.numel() for p in model.parameters()) == 1_315_105_072
    return {key: value.shape for key, value in SAM.to_official(model.state_dict()).items()}


def test_full_size_evf_sam_has_the_official_keys_and_shapes(full_size_official_state):
    assert len(full_size_official_state) == 1569
    for key, shape in OFFICIAL_SHAPES.items():
        assert tuple(full_size_official_state[key]) == shape, key


def test_every_rule_is_exercised_by_the_full_size_model(full_size_official_state):
    keys = list(full_size_official_state)
    for official_prefix, _ in SAM.rules:
        pattern = official_prefix.replace("{i}", "0").replace("{n}", "1")
        stem = official_prefix.split("{")[0]
        assert any(k.startswith(pattern) or k.startswith(stem) for k in keys), official_prefix


def test_map_is_a_bijection_both_ways(full_size_official_state):
    official = list(full_size_official_state)
    ours = [SAM.our_key(k) for k in official]
    assert len(set(ours)) == len(ours)
    assert [SAM.official_key(k) for k in ours] == official


def test_tiny_model_round_trips_through_official_names_strictly():
    torch.manual_seed(0)
    model = EvfModel(EvfModelConfig.tiny())
    official = SAM.to_official(model.state_dict())
    assert all(k.startswith(("visual_model.", "mm_extractor.beit3.", "text_hidden_fcs.0.")) for k in official)
    torch.manual_seed(1)
    fresh = EvfModel(EvfModelConfig.tiny())
    fresh.load_state_dict(SAM.from_official(official), strict=True)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[key], value)


def test_unknown_key_and_unknown_family_name_themselves():
    with pytest.raises(UnmappedKeyError, match=r"lm_head\.weight"):
        SAM.our_key("lm_head.weight")
    with pytest.raises(KeyError, match="sam3"):
        name_map("sam3")
