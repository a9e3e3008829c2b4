"""SAM (ViT-B/L/H) image backbone built from transformers' maintained modules.

transformers' `SamVisionEncoder`, `SamPromptEncoder` and `SamMaskDecoder` run SDPA and their names map
one-to-one onto the official segment-anything keys (see `evf_lightning.hub.official_names`). Two details
differ from the original and are corrected here: the two-way transformer's LayerNorm eps (1e-5 in the
original, 1e-6 in transformers) and the random positional gaussian matrix, which transformers keeps as a
trainable parameter but the original keeps as a fixed buffer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn
from transformers import SamConfig as HfSamConfig
from transformers.models.sam.configuration_sam import SamMaskDecoderConfig
from transformers.models.sam.modeling_sam import SamAttention, SamMaskDecoder, SamPromptEncoder, SamVisionEncoder

from evf_lightning.models.image_backbone import ImageBackbone, Resize
from evf_lightning.models.image_features import ImageFeatures


@dataclass(frozen=True)
class SamBackboneConfig:
    """One SAM size. Defaults are ViT-B; use the presets for the published sizes.

    `resize` is how images are brought to `image_size` (reference/evf-sam-recipe.md §2); the data
    module follows it, and mask logits are mapped back to the original size the inverse way.
    """

    family: Literal["sam"] = "sam"
    width: int = 768
    depth: int = 12
    num_heads: int = 12
    global_attn_indexes: list[int] = field(default_factory=lambda: [2, 5, 8, 11])
    window_size: int = 14
    image_size: int = 1024
    patch_size: int = 16
    prompt_dim: int = 256
    decoder_mlp_dim: int = 2048
    decoder_heads: int = 8
    # Every token-image cross attention of the decoder (in both two-way blocks and the final one) runs at
    # prompt_dim / this: 2 in every SAM. The from-scratch tiny model learns faster at full width (evf_tiny.yaml).
    decoder_attention_downsample: int = 2
    resize: Resize = "longest_pad"
    attn_implementation: str = "sdpa"
    # The std of the image encoder's from-scratch weights. transformers' SamVisionConfig defaults to 1e-10, which
    # starts every layer at practically zero; 0.02 is SamConfig's own value and BEiT-3's. Loaded weights replace it.
    init_std: float = 0.02

    def __post_init__(self) -> None:
        rate = self.decoder_attention_downsample
        if rate < 1 or self.prompt_dim % rate or (self.prompt_dim // rate) % self.decoder_heads:
            raise ValueError(
                f"image_backbone.decoder_attention_downsample {rate} must divide prompt_dim "
                f"{self.prompt_dim} into a width divisible by decoder_heads {self.decoder_heads}"
            )

    @classmethod
    def vit_b(cls) -> SamBackboneConfig:
        return cls()

    @classmethod
    def vit_l(cls) -> SamBackboneConfig:
        return cls(width=1024, depth=24, num_heads=16, global_attn_indexes=[5, 11, 17, 23])

    @classmethod
    def vit_h(cls) -> SamBackboneConfig:
        return cls(width=1280, depth=32, num_heads=16, global_attn_indexes=[7, 15, 23, 31])

    @classmethod
    def tiny(cls, image_size: int = 128) -> SamBackboneConfig:
        """A few-hundred-thousand-parameter SAM for tests and the CPU quickstart."""
        return cls(
            width=64,
            depth=2,
            num_heads=2,
            global_attn_indexes=[1],
            window_size=4,
            image_size=image_size,
            prompt_dim=64,
            decoder_mlp_dim=128,
            decoder_heads=2,
        )

    @property
    def embedding_size(self) -> int:
        """Side of the square image embedding grid."""
        return self.image_size // self.patch_size

    def to_hf(self) -> HfSamConfig:
        return HfSamConfig(
            vision_config={
                "hidden_size": self.width,
                "num_hidden_layers": self.depth,
                "num_attention_heads": self.num_heads,
                "global_attn_indexes": list(self.global_attn_indexes),
                "window_size": self.window_size,
                "image_size": self.image_size,
                "patch_size": self.patch_size,
                "output_channels": self.prompt_dim,
                "num_pos_feats": self.prompt_dim // 2,
                "initializer_range": self.init_std,
            },
            prompt_encoder_config={
                "hidden_size": self.prompt_dim,
                "image_size": self.image_size,
                "patch_size": self.patch_size,
            },
            mask_decoder_config={
                "hidden_size": self.prompt_dim,
                "mlp_dim": self.decoder_mlp_dim,
                "num_attention_heads": self.decoder_heads,
                "attention_downsample_rate": self.decoder_attention_downsample,
                "iou_head_hidden_dim": self.prompt_dim,
                # The original two-way transformer uses nn.LayerNorm's default eps.
                "layer_norm_eps": 1e-5,
            },
            attn_implementation=self.attn_implementation,
        )


class SamImageBackbone(ImageBackbone):
    """SAM's image encoder, prompt encoder and mask decoder behind the EVF backbone interface.

    `encode` turns normalised pixels into an image embedding; `decode` turns that embedding plus one
    sparse prompt per expression into low-resolution mask logits. The dense prompt is SAM's learned
    `no_mask_embed`, as in EVF-SAM: no points, boxes or masks are ever given.
    """

    def __init__(self, config: SamBackboneConfig) -> None:
        super().__init__()
        self.config = config
        hf = config.to_hf()
        hf.vision_config._attn_implementation = config.attn_implementation
        hf.mask_decoder_config._attn_implementation = config.attn_implementation
        self.image_encoder = SamVisionEncoder(hf.vision_config)
        self.prompt_encoder = SamPromptEncoder(hf)
        self.mask_decoder = SamMaskDecoder(hf.mask_decoder_config)
        _size_block_cross_attention(self.mask_decoder, hf.mask_decoder_config)
        _make_gaussian_matrix_a_buffer(self.prompt_encoder.shared_embedding)

    @property
    def no_mask_embed(self) -> nn.Module:
        return self.prompt_encoder.no_mask_embed

    def encode(self, pixels: Tensor) -> ImageFeatures:
        return ImageFeatures(embedding=self.image_encoder(pixels).last_hidden_state)

    def dense_positional_encoding(self) -> Tensor:
        """The fixed positional encoding of the embedding grid, [1, C, h, w]."""
        size = self.config.embedding_size
        pe = self.prompt_encoder.shared_embedding
        device, dtype = pe.positional_embedding.device, pe.positional_embedding.dtype
        centres = (torch.arange(size, device=device, dtype=dtype) + 0.5) / size
        y, x = torch.meshgrid(centres, centres, indexing="ij")
        grid = pe(torch.stack([x, y], dim=-1))
        return grid.permute(2, 0, 1).unsqueeze(0)

    def decode(
        self, features: ImageFeatures, image_index: Tensor, prompts: Tensor, multimask_output: bool = False
    ) -> Tensor:
        """Mask logits [N, 4h, 4w]; the dense prompt is `no_mask_embed`."""
        embedding = features.embedding[image_index]
        n, _, h, w = embedding.shape
        dense = self.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(n, -1, h, w)
        positional = self.dense_positional_encoding().to(embedding.dtype).expand(n, -1, -1, -1)
        masks, iou = self.mask_decoder(
            image_embeddings=embedding,
            image_positional_embeddings=positional,
            sparse_prompt_embeddings=prompts.unsqueeze(1).to(embedding.dtype),
            dense_prompt_embeddings=dense.to(embedding.dtype),
            multimask_output=multimask_output,
        )
        masks, iou = masks[:, 0], iou[:, 0]
        if multimask_output:
            best = iou.argmax(dim=-1)
            return masks[torch.arange(n, device=masks.device), best]
        return masks[:, 0]


def _size_block_cross_attention(decoder: SamMaskDecoder, config: SamMaskDecoderConfig) -> None:
    """Rebuild the two-way blocks' cross attentions at `config.attention_downsample_rate`.

    transformers sizes only the final attention by that rate and builds the blocks' at half width whatever it
    says, which matches every published SAM (rate 2), so those are left as built.
    """
    rate = config.attention_downsample_rate
    for block in decoder.transformer.layers:
        if block.cross_attn_token_to_image.internal_dim != config.hidden_size // rate:
            block.cross_attn_token_to_image = SamAttention(config, downsample_rate=rate)
            block.cross_attn_image_to_token = SamAttention(config, downsample_rate=rate)


def _make_gaussian_matrix_a_buffer(module: nn.Module) -> None:
    """Swap transformers' trainable gaussian matrix for a fixed buffer, as the original SAM has it.

    Drawn with unit scale like segment-anything's `PositionEmbeddingRandom`: transformers scales it by
    width/2, which only matters for models trained from scratch (pretrained weights overwrite it).
    """
    matrix = module.positional_embedding.detach()
    del module.positional_embedding
    module.register_buffer("positional_embedding", torch.randn_like(matrix, device=matrix.device))
