"""SAM-2 (Hiera T/S/B+/L) image backbone built from transformers' maintained modules.

The image path is transformers' `Sam2VisionModel` (Hiera trunk + FPN neck), `Sam2PromptEncoder` and
`Sam2MaskDecoder`, run with SDPA. EVF-SAM2 checkpoints store the whole SAM-2 model, video-memory parts
included (reference/checkpoints.md §4), and the official loader fills a missing key with garbage, so those
parts are built here too, from transformers' Sam2Video modules, with their real shapes: they load and
export with the rest, stay frozen and take no part in `encode`/`decode`; they are there for video propagation.

Two details differ from transformers and are set here: the original keeps its four point-type embeddings
as four [1, C] tables (`point_embeddings.i`), transformers as one [4, C] table, so the prompt encoder gets
`PointEmbeddings`, which stores the four and reads as the one; and only the prompt encoder's random
gaussian matrix exists (transformers' `Sam2Model` keeps a second copy for the image-wide encoding).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from transformers import Sam2Config as HfSam2Config
from transformers import Sam2VideoConfig as HfSam2VideoConfig
from transformers.models.sam2.modeling_sam2 import Sam2MaskDecoder, Sam2PromptEncoder, Sam2VisionModel
from transformers.models.sam2_video.modeling_sam2_video import (
    Sam2VideoFeedForward,
    Sam2VideoMemoryAttention,
    Sam2VideoMemoryEncoder,
)

from evf_lightning.models.image_backbone import ImageBackbone, Resize, named_tensors
from evf_lightning.models.image_features import ImageFeatures
from evf_lightning.models.sam import SamImageBackbone

# The image embedding the decoder attends to sits at stride 16 (patch stride 4, then two query poolings).
EMBEDDING_STRIDE = 16
# Memory features are 64 wide in every SAM-2 size; transformers hard-codes it in the memory cross-attention.
MEMORY_DIM = 64


@dataclass(frozen=True)
class Sam2BackboneConfig:
    """One SAM-2 size. Defaults are Hiera-L as in EVF-SAM2; use the presets for the others.

    Hiera doubles width and heads at each of its four stages, so `embed_dim` and `num_heads` are the first
    stage's. `resize` is how images reach `image_size` (reference/evf-sam-recipe.md §2): the default
    `longest_then_stretch` is what the evf-sam2 checkpoint was made with, `stretch` what evf-sam2-multitask
    and the current official code use. `dynamic_multimask_via_stability` is the older official mask choice:
    with a single mask asked for, an eval-mode decoder swaps token 0's mask for the best of the three
    multimask outputs when token 0's is unstable (build_sam2 turns it on; checkpoints.md §6). The other
    released choice, best of three by predicted IoU, is `EvfModelConfig.multimask_output=True`.
    """

    family: Literal["sam2"] = "sam2"
    embed_dim: int = 144
    num_heads: int = 2
    stages: list[int] = field(default_factory=lambda: [2, 6, 36, 4])
    global_attn_blocks: list[int] = field(default_factory=lambda: [23, 33, 43])
    window_sizes: list[int] = field(default_factory=lambda: [8, 4, 16, 8])
    window_pos_embed_size: list[int] = field(default_factory=lambda: [7, 7])
    image_size: int = 1024
    prompt_dim: int = 256
    decoder_mlp_dim: int = 2048
    decoder_heads: int = 8
    memory_attention_layers: int = 4
    memory_attention_mlp_dim: int = 2048
    num_maskmem: int = 7
    resize: Resize = "longest_then_stretch"
    dynamic_multimask_via_stability: bool = True
    attn_implementation: str = "sdpa"

    @classmethod
    def hiera_tiny(cls) -> Sam2BackboneConfig:
        return cls(
            embed_dim=96,
            num_heads=1,
            stages=[1, 2, 7, 2],
            global_attn_blocks=[5, 7, 9],
            window_sizes=[8, 4, 14, 7],
        )

    @classmethod
    def hiera_small(cls) -> Sam2BackboneConfig:
        return cls(
            embed_dim=96,
            num_heads=1,
            stages=[1, 2, 11, 2],
            global_attn_blocks=[7, 10, 13],
            window_sizes=[8, 4, 14, 7],
        )

    @classmethod
    def hiera_base_plus(cls) -> Sam2BackboneConfig:
        return cls(
            embed_dim=112,
            stages=[2, 3, 16, 3],
            global_attn_blocks=[12, 16, 20],
            window_sizes=[8, 4, 14, 7],
            window_pos_embed_size=[14, 14],
        )

    @classmethod
    def hiera_large(cls) -> Sam2BackboneConfig:
        return cls()

    @classmethod
    def tiny(cls, image_size: int = 128) -> Sam2BackboneConfig:
        """A few-hundred-thousand-parameter SAM-2, memory parts included, for tests on a CPU."""
        return cls(
            embed_dim=8,
            num_heads=1,
            stages=[1, 1, 2, 1],
            global_attn_blocks=[3],
            window_sizes=[4, 4, 4, 2],
            window_pos_embed_size=[4, 4],
            image_size=image_size,
            prompt_dim=32,
            decoder_mlp_dim=64,
            decoder_heads=2,
            memory_attention_layers=2,
            memory_attention_mlp_dim=64,
        )

    @property
    def embedding_size(self) -> int:
        """Side of the square image embedding grid."""
        return self.image_size // EMBEDDING_STRIDE

    @property
    def stage_dims(self) -> list[int]:
        return [self.embed_dim * 2**stage for stage in range(len(self.stages))]

    def _hf_parts(self) -> dict[str, dict]:
        """The vision, prompt-encoder and mask-decoder configs both transformers configs share."""
        side = self.embedding_size
        return {
            "vision_config": {
                "model_type": "sam2_vision_model",
                "backbone_config": {
                    "model_type": "sam2_hiera_det_model",
                    "hidden_size": self.embed_dim,
                    "num_attention_heads": self.num_heads,
                    "image_size": [self.image_size, self.image_size],
                    "blocks_per_stage": list(self.stages),
                    "embed_dim_per_stage": self.stage_dims,
                    "num_attention_heads_per_stage": [self.num_heads * 2**stage for stage in range(len(self.stages))],
                    "window_size_per_stage": list(self.window_sizes),
                    "global_attention_blocks": list(self.global_attn_blocks),
                    "window_positional_embedding_background_size": list(self.window_pos_embed_size),
                },
                "backbone_channel_list": self.stage_dims[::-1],
                "backbone_feature_sizes": [[4 * side, 4 * side], [2 * side, 2 * side], [side, side]],
                "fpn_hidden_size": self.prompt_dim,
            },
            "prompt_encoder_config": {
                "hidden_size": self.prompt_dim,
                "image_size": self.image_size,
                "patch_size": EMBEDDING_STRIDE,
            },
            "mask_decoder_config": {
                "hidden_size": self.prompt_dim,
                "mlp_dim": self.decoder_mlp_dim,
                "num_attention_heads": self.decoder_heads,
                "iou_head_hidden_dim": self.prompt_dim,
                "dynamic_multimask_via_stability": self.dynamic_multimask_via_stability,
            },
        }

    def to_hf(self) -> HfSam2Config:
        """transformers' config of the image path."""
        return HfSam2Config(**self._hf_parts(), attn_implementation=self.attn_implementation)

    def to_hf_video(self) -> HfSam2VideoConfig:
        """transformers' config with the memory parts, as SAM 2.0 has them (no 2.1-only tensors)."""
        side = self.embedding_size
        return HfSam2VideoConfig(
            **self._hf_parts(),
            image_size=self.image_size,
            num_maskmem=self.num_maskmem,
            enable_temporal_pos_encoding_for_object_pointers=False,
            enable_occlusion_spatial_embedding=False,
            memory_attention_hidden_size=self.prompt_dim,
            memory_attention_num_layers=self.memory_attention_layers,
            memory_attention_feed_forward_hidden_size=self.memory_attention_mlp_dim,
            memory_attention_rope_feat_sizes=[side, side],
            memory_encoder_hidden_size=self.prompt_dim,
            memory_encoder_output_channels=MEMORY_DIM,
            mask_downsampler_embed_dim=self.prompt_dim,
            memory_fuser_embed_dim=self.prompt_dim,
            memory_fuser_intermediate_dim=4 * self.prompt_dim,
            attn_implementation=self.attn_implementation,
        )


class PointEmbeddings(nn.ModuleList):
    """The four point-type embeddings stored as the original's four [1, C] tables, read as one [4, C] table.

    transformers' prompt encoder looks rows up (`point_embed(labels)`) and reads `point_embed.weight`;
    both work on the concatenation, so the state dict keeps the original's layout one-to-one.
    """

    def __init__(self, count: int, dim: int) -> None:
        super().__init__(nn.Embedding(1, dim) for _ in range(count))

    @property
    def weight(self) -> Tensor:
        return torch.cat([table.weight for table in self], dim=0)

    def forward(self, labels: Tensor) -> Tensor:
        return F.embedding(labels, self.weight)


class Sam2ImageBackbone(ImageBackbone):
    """SAM-2's image path behind the EVF backbone interface, plus its frozen video-memory parts.

    `encode` runs Hiera + FPN, keeps the three finest levels, adds `no_memory_embedding` to the 64² one
    (what the official image path does when no memory exists) and projects the two finer ones through the
    decoder's `conv_s0`/`conv_s1`, as the official `forward_image` does; so those two convolutions, and
    `no_memory_embedding`, belong to the cached image features and only train with the image encoder's
    gradients. `decode` gives each expression its image (the official `repeat_image`), the projected text
    vector as the only sparse prompt, `no_mask_embed` as the dense prompt, and the high-res skips.
    """

    # The video-memory parts: in the module tree and the state dict, never in encode/decode.
    MEMORY_PARTS = (
        "memory_attention",
        "memory_encoder",
        "mask_downsample",
        "object_pointer_proj",
        "no_memory_positional_encoding",
        "memory_temporal_positional_encoding",
        "no_object_pointer",
    )

    def __init__(self, config: Sam2BackboneConfig) -> None:
        super().__init__()
        self.config = config
        hf, video = config.to_hf(), config.to_hf_video()
        for part in (hf.vision_config, hf.vision_config.backbone_config, hf.mask_decoder_config, video):
            part._attn_implementation = config.attn_implementation
        self.image_encoder = Sam2VisionModel(hf.vision_config)
        self.prompt_encoder = Sam2PromptEncoder(hf.prompt_encoder_config)
        self.prompt_encoder.point_embed = PointEmbeddings(
            hf.prompt_encoder_config.num_point_embeddings, config.prompt_dim
        )
        self.mask_decoder = Sam2MaskDecoder(hf.mask_decoder_config)
        self.no_memory_embedding = nn.Parameter(torch.zeros(1, 1, config.prompt_dim))

        self.memory_attention = Sam2VideoMemoryAttention(video)
        self.memory_encoder = Sam2VideoMemoryEncoder(video)
        self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
        self.object_pointer_proj = Sam2VideoFeedForward(config.prompt_dim, config.prompt_dim, config.prompt_dim, 3)
        self.no_memory_positional_encoding = nn.Parameter(torch.zeros(1, 1, config.prompt_dim))
        self.memory_temporal_positional_encoding = nn.Parameter(torch.zeros(config.num_maskmem, 1, 1, MEMORY_DIM))
        self.no_object_pointer = nn.Parameter(torch.zeros(1, config.prompt_dim))
        for name in self.MEMORY_PARTS:
            getattr(self, name).requires_grad_(False)

    @property
    def no_mask_embed(self) -> nn.Module:
        return self.prompt_encoder.no_mask_embed

    def encode(self, pixels: Tensor) -> ImageFeatures:
        s0, s1, embedding = self.image_encoder(pixels).fpn_hidden_states
        embedding = embedding + self.no_memory_embedding.reshape(1, -1, 1, 1)
        return ImageFeatures(embedding, [self.mask_decoder.conv_s0(s0), self.mask_decoder.conv_s1(s1)])

    def encode_tensors(self) -> dict[str, Tensor]:
        """`encode` also adds the no-memory embedding and projects the high-res maps with the decoder's convs."""
        return {
            **super().encode_tensors(),
            **named_tensors(self.mask_decoder.conv_s0, "mask_decoder.conv_s0"),
            **named_tensors(self.mask_decoder.conv_s1, "mask_decoder.conv_s1"),
            "no_memory_embedding": self.no_memory_embedding,
        }

    # Same gaussian-matrix encoding of the embedding grid as SAM's.
    dense_positional_encoding = SamImageBackbone.dense_positional_encoding

    def decoder_outputs(
        self, features: ImageFeatures, image_index: Tensor, prompts: Tensor, multimask_output: bool = False
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The mask decoder's outputs for N prompts, all of them: mask logits [N, 1, M, 4h, 4w], predicted IoU
        [N, 1, M], the mask tokens [N, 1, M, C] and object-score logits [N, 1, 1] (M = 3 with `multimask_output`,
        else 1). Video propagation needs the last two, for SAM-2's object pointer and occlusion gate."""
        per_prompt = features[image_index]
        embedding = per_prompt.embedding
        n, _, h, w = embedding.shape
        dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(n, -1, h, w)
        positional = self.dense_positional_encoding().to(embedding.dtype).expand(n, -1, -1, -1)
        return self.mask_decoder(
            image_embeddings=embedding,
            image_positional_embeddings=positional,
            sparse_prompt_embeddings=prompts.unsqueeze(1).to(embedding.dtype),
            dense_prompt_embeddings=dense.to(embedding.dtype),
            multimask_output=multimask_output,
            high_resolution_features=per_prompt.high_res,
        )

    def decode(
        self, features: ImageFeatures, image_index: Tensor, prompts: Tensor, multimask_output: bool = False
    ) -> Tensor:
        """Mask logits [N, 4h, 4w]: the best of three by predicted IoU with `multimask_output`, else token 0's
        (in eval mode, with `dynamic_multimask_via_stability`, the best of three where token 0's is unstable)."""
        masks, iou, _, _ = self.decoder_outputs(features, image_index, prompts, multimask_output)
        masks, iou = masks[:, 0], iou[:, 0]
        n = masks.shape[0]
        if multimask_output:
            return masks[torch.arange(n, device=masks.device), iou.argmax(dim=-1)]
        return masks[:, 0]
