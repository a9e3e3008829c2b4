"""SAM backbone: published sizes on the meta device, tiny forward/backward, the original's fixed buffers."""

from dataclasses import replace

import pytest
import torch

from evf_lightning.models.sam import SamBackboneConfig, SamImageBackbone


@pytest.mark.parametrize(
    ("preset", "parameters"),
    [
        (SamBackboneConfig.vit_b, 93_735_472),
        (SamBackboneConfig.vit_l, 312_342_832),
        (SamBackboneConfig.vit_h, 641_090_608),
    ],
)
def test_published_sizes_build_on_meta(preset, parameters):
    with torch.device("meta"):
        backbone = SamImageBackbone(preset())
    assert sum(p.numel() for p in backbone.parameters()) == parameters
    # segment-anything's state dict: 594 keys for ViT-H (457 encoder + 17 prompt encoder + 120 decoder)
    if preset is SamBackboneConfig.vit_h:
        assert len(backbone.state_dict()) == 594


def test_gaussian_matrix_is_a_fixed_buffer():
    backbone = SamImageBackbone(SamBackboneConfig.tiny())
    names = [name for name, _ in backbone.named_parameters()]
    assert not any("positional_embedding" in name for name in names)
    assert "prompt_encoder.shared_embedding.positional_embedding" in dict(backbone.named_buffers())


def test_two_way_transformer_uses_original_layernorm_eps():
    backbone = SamImageBackbone(SamBackboneConfig.tiny())
    norms = [m for n, m in backbone.mask_decoder.transformer.named_modules() if isinstance(m, torch.nn.LayerNorm)]
    assert norms and all(norm.eps == 1e-5 for norm in norms)


@pytest.mark.parametrize("rate", [1, 2, 4])
def test_every_cross_attention_width_follows_the_downsample_rate(rate):
    config = replace(SamBackboneConfig.tiny(), decoder_attention_downsample=rate)
    transformer = SamImageBackbone(config).mask_decoder.transformer
    attentions = [transformer.final_attn_token_to_image]
    attentions += [a for b in transformer.layers for a in (b.cross_attn_token_to_image, b.cross_attn_image_to_token)]
    for attention in attentions:
        assert attention.q_proj.out_features == attention.k_proj.out_features == config.prompt_dim // rate
        assert attention.out_proj.in_features == config.prompt_dim // rate
    for block in transformer.layers:
        assert block.self_attn.q_proj.out_features == config.prompt_dim


@pytest.mark.parametrize("rate", [0, 3, 64])
def test_an_attention_width_the_heads_cannot_split_is_refused(rate):
    with pytest.raises(ValueError, match=f"decoder_attention_downsample {rate} must divide prompt_dim 64"):
        replace(SamBackboneConfig.tiny(), decoder_attention_downsample=rate)


def test_a_fresh_image_encoder_sees_the_image():
    """From scratch, each image gets its own embedding: the encoder's weights are not near zero."""
    torch.manual_seed(0)
    backbone = SamImageBackbone(SamBackboneConfig.tiny(image_size=64))
    weights = [p for n, p in backbone.image_encoder.named_parameters() if n.endswith("weight") and p.dim() > 1]
    assert weights and all(0.01 < float(w.std()) < 0.05 for w in weights)
    embedding = backbone.encode(torch.randn(2, 3, 64, 64)).embedding
    assert float((embedding[0] - embedding[1]).std()) > 0.1


def test_tiny_forward_backward_shares_each_image_between_its_prompts():
    torch.manual_seed(0)
    config = SamBackboneConfig.tiny(image_size=64)
    backbone = SamImageBackbone(config)
    features = backbone.encode(torch.randn(2, 3, 64, 64))
    assert features.embedding.shape == (2, config.prompt_dim, 4, 4)
    image_index = torch.tensor([0, 0, 1])
    prompts = torch.randn(3, 1, config.prompt_dim, requires_grad=True)
    logits = backbone.decode(features, image_index, prompts)
    assert logits.shape == (3, 16, 16)
    # expressions 0 and 1 share image 0 but differ in prompt, so their masks differ
    assert not torch.allclose(logits[0], logits[1])
    # the same prompt on the same image gives the same mask whichever slot it sits in
    again = backbone.decode(features, torch.tensor([0]), prompts[1:2])
    torch.testing.assert_close(again[0], logits[1])
    logits.sum().backward()
    assert prompts.grad is not None and prompts.grad.abs().sum() > 0
    assert backbone.mask_decoder.iou_token.weight.grad is not None


def test_multimask_output_keeps_the_mask_with_best_predicted_iou():
    torch.manual_seed(0)
    config = SamBackboneConfig.tiny(image_size=64)
    backbone = SamImageBackbone(config).eval()
    features = backbone.encode(torch.randn(1, 3, 64, 64))
    prompts = torch.randn(2, 1, config.prompt_dim)
    index = torch.tensor([0, 0])
    chosen = backbone.decode(features, index, prompts, multimask_output=True)
    embedding = features.embedding[index]
    dense = backbone.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(2, -1, 4, 4)
    masks, iou = backbone.mask_decoder(
        embedding,
        backbone.dense_positional_encoding().expand(2, -1, -1, -1),
        prompts.unsqueeze(1),
        dense,
        True,
    )
    best = iou[:, 0].argmax(-1)
    torch.testing.assert_close(chosen, masks[torch.arange(2), 0, best])
