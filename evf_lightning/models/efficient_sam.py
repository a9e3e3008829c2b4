"""EfficientSAM (ViT-T/S) image backbone, written here with the official module names.

EfficientSAM (yformer/EfficientSAM) has no maintained package, so this is a from-scratch module that
behaves like the copy EVF-Effi-SAM vendors (reference/checkpoints.md §5, §6) and has the same module tree,
so official weights load with no renaming and an export writes every key the official loader expects:

* a plain ViT (global attention, pre-LN, LN eps 1e-6) whose absolute positions were learned for a
  224-px grid plus a [CLS] row; the [CLS] row is dropped and the grid bicubic-resized to the token grid
  on every call, as upstream does;
* SAM's neck (1x1 conv, LN2d, 3x3 conv, LN2d) to 256 channels;
* a prompt encoder of which EVF only uses the fixed random gaussian matrix (the dense positional
  encoding); its four point/box embeddings are kept, unused, for checkpoint fidelity;
* a SAM-style mask decoder with GELU everywhere, GroupNorm in the upscaling path, two-layer hypernetwork
  MLPs named `layers.{0,1}.0` + `fc`, and a two-way transformer whose self-attention adds the query
  positional encoding into the residual stream (upstream's quirk, kept because weights were trained so).

Attention runs through `scaled_dot_product_attention`; its default scale is upstream's head_dim**-0.5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from evf_lightning.models.image_backbone import ImageBackbone, Resize
from evf_lightning.models.image_features import ImageFeatures

# The mask decoder's fixed layout (build_efficient_sam): three multimask outputs plus the single-mask token,
# two two-way layers, attention to and from the image at half width.
NUM_MULTIMASK_OUTPUTS = 3
DECODER_DEPTH = 2
CROSS_ATTENTION_DOWNSAMPLE = 2


@dataclass(frozen=True)
class EfficientSamBackboneConfig:
    """One EfficientSAM size. Defaults are EfficientSAM-S (EVF-Effi-SAM-L); use the presets.

    `pretrain_image_size` is the grid the absolute positions were learned on (224 px, 14x14 patches);
    they are resized to `image_size // patch_size` on every call. `resize` is how images reach the
    `image_size` square, which EVF-Effi always stretches to; the default `longest_then_stretch` is the
    official code of the Effi release (evf-sam-recipe.md §2: before 9d00853), `stretch` the current code.
    """

    family: Literal["effi"] = "effi"
    width: int = 384
    depth: int = 12
    num_heads: int = 6
    patch_size: int = 16
    pretrain_image_size: int = 224
    image_size: int = 1024
    prompt_dim: int = 256
    decoder_mlp_dim: int = 2048
    decoder_heads: int = 8
    resize: Resize = "longest_then_stretch"

    def __post_init__(self) -> None:
        if self.width % self.num_heads:
            raise ValueError(f"width {self.width} is not divisible by num_heads {self.num_heads}")
        for name in ("image_size", "pretrain_image_size"):
            if getattr(self, name) % self.patch_size:
                raise ValueError(f"{name} {getattr(self, name)} is not a multiple of patch_size {self.patch_size}")
        if (self.prompt_dim // CROSS_ATTENTION_DOWNSAMPLE) % self.decoder_heads or self.prompt_dim % 8:
            raise ValueError(f"prompt_dim {self.prompt_dim} must be a multiple of 8 and split into decoder heads")

    @classmethod
    def vit_t(cls) -> EfficientSamBackboneConfig:
        """EfficientSAM-T (efficient_sam_vitt.pt): the image backbone of EVF-Effi-SAM-B."""
        return cls(width=192, num_heads=3)

    @classmethod
    def vit_s(cls) -> EfficientSamBackboneConfig:
        """EfficientSAM-S (efficient_sam_vits.pt): the image backbone of EVF-Effi-SAM-L."""
        return cls()

    @classmethod
    def tiny(cls, image_size: int = 128) -> EfficientSamBackboneConfig:
        """A small EfficientSAM for tests on a CPU; its 8x8 position grid is resized to 16x16 at 128 px."""
        return cls(
            width=32,
            depth=2,
            num_heads=2,
            patch_size=8,
            pretrain_image_size=64,
            image_size=image_size,
            prompt_dim=32,
            decoder_mlp_dim=64,
            decoder_heads=2,
        )

    @property
    def embedding_size(self) -> int:
        """Side of the square image embedding grid."""
        return self.image_size // self.patch_size


# ----- image encoder -------------------------------------------------------------------------------------
class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a [B, C, H, W] map (SAM's neck)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        normed = F.layer_norm(x.permute(0, 2, 3, 1), self.weight.shape, self.weight, self.bias, self.eps)
        return normed.permute(0, 3, 1, 2)


class PatchEmbed(nn.Module):
    """Non-overlapping conv patches, [B, 3, S, S] -> [B, D, S/p, S/p]."""

    def __init__(self, patch_size: int, width: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size)

    def forward(self, pixels: Tensor) -> Tensor:
        return self.proj(pixels)


class Attention(nn.Module):
    """Global multi-head self-attention with a fused qkv projection."""

    def __init__(self, width: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        mixed = F.scaled_dot_product_attention(q, k, v)
        return self.proj(mixed.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-LN ViT block: x + attn(LN(x)), then x + mlp(LN(x))."""

    def __init__(self, width: int, num_heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=1e-6)
        self.attn = Attention(width, num_heads)
        self.norm2 = nn.LayerNorm(width, eps=1e-6)
        self.mlp = Mlp(width, 4 * width)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ImageEncoderViT(nn.Module):
    """Normalised pixels [B, 3, S, S] -> image embedding [B, prompt_dim, S/p, S/p]."""

    def __init__(self, config: EfficientSamBackboneConfig) -> None:
        super().__init__()
        self.image_size = config.image_size
        width, pretrain_grid = config.width, config.pretrain_image_size // config.patch_size
        self.patch_embed = PatchEmbed(config.patch_size, width)
        # [CLS] row first, then the pretraining grid row-major; upstream starts it at zero, pretrained weights
        # replace it. From scratch a small random init gives the (frozen) encoder positions to work with.
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + pretrain_grid**2, width))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList(Block(width, config.num_heads) for _ in range(config.depth))
        dim = config.prompt_dim
        self.neck = nn.Sequential(
            nn.Conv2d(width, dim, kernel_size=1, bias=False),
            LayerNorm2d(dim),
            nn.Conv2d(dim, dim, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(dim),
        )

    def positions(self, height: int, width: int) -> Tensor:
        """The learned grid (its [CLS] row dropped) bicubic-resized to [1, height, width, D]."""
        grid = self.pos_embed[:, 1:]
        side = math.isqrt(grid.shape[1])
        grid = grid.reshape(1, side, side, -1)
        if (side, side) == (height, width):
            return grid
        resized = F.interpolate(grid.permute(0, 3, 1, 2), size=(height, width), mode="bicubic", align_corners=False)
        return resized.permute(0, 2, 3, 1)

    def forward(self, pixels: Tensor) -> Tensor:
        if pixels.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"EfficientSAM expects {self.image_size}² images, got {tuple(pixels.shape[-2:])}")
        x = self.patch_embed(pixels).permute(0, 2, 3, 1)
        b, h, w, c = x.shape
        x = (x + self.positions(h, w)).reshape(b, h * w, c)
        for block in self.blocks:
            x = block(x)
        return self.neck(x.reshape(b, h, w, c).permute(0, 3, 1, 2))


# ----- prompt encoder --------------------------------------------------------------------------------------
class PositionEmbeddingRandom(nn.Module):
    """Fourier features of normalised coordinates through a fixed random gaussian matrix (a checkpoint buffer)."""

    def __init__(self, num_pos_feats: int) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_pos_feats))

    def forward(self, size: int) -> Tensor:
        """[C, size, size] encoding of the pixel centres of a square grid, in the buffer's dtype (as EVF's copy)."""
        matrix = self.positional_encoding_gaussian_matrix
        centres = (torch.arange(size, device=matrix.device, dtype=matrix.dtype) + 0.5) / size
        y, x = torch.meshgrid(centres, centres, indexing="ij")
        projected = 2 * math.pi * ((2 * torch.stack([x, y], dim=-1) - 1) @ matrix)
        return torch.cat([projected.sin(), projected.cos()], dim=-1).permute(2, 0, 1)


class PromptEncoder(nn.Module):
    """EfficientSAM's point prompt encoder. EVF reads only the dense positional encoding.

    The four point/box-corner embeddings take no part in EVF's forward; they are kept so that official
    checkpoints load strictly and exports carry every key the official loader fills (checkpoints.md §9).
    """

    def __init__(self, config: EfficientSamBackboneConfig) -> None:
        super().__init__()
        dim = config.prompt_dim
        self.embedding_size = config.embedding_size
        self.pe_layer = PositionEmbeddingRandom(dim // 2)
        self.invalid_points = nn.Embedding(1, dim)
        self.point_embeddings = nn.Embedding(1, dim)
        self.bbox_top_left_embeddings = nn.Embedding(1, dim)
        self.bbox_bottom_right_embeddings = nn.Embedding(1, dim)

    def get_dense_pe(self) -> Tensor:
        """[1, C, h, w] positional encoding of the image embedding grid."""
        return self.pe_layer(self.embedding_size).unsqueeze(0)


# ----- mask decoder ----------------------------------------------------------------------------------------
class MLPBlock(nn.Module):
    """`num_layers` x (Linear, GELU) at `hidden` width, then the output Linear `fc`."""

    def __init__(self, input_dim: int, hidden: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        widths = [input_dim] + [hidden] * num_layers
        self.layers = nn.ModuleList(nn.Sequential(nn.Linear(a, b), nn.GELU()) for a, b in pairwise(widths))
        self.fc = nn.Linear(hidden, output_dim)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.fc(x)


class AttentionForTwoWayAttentionBlock(nn.Module):
    """Multi-head attention whose inner width is the embedding width / `downsample_rate`."""

    def __init__(self, dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        inner = dim // downsample_rate
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, inner)
        self.k_proj = nn.Linear(dim, inner)
        self.v_proj = nn.Linear(dim, inner)
        self.out_proj = nn.Linear(inner, dim)
        # Upstream's init: Xavier-uniform as if q, k, v were one fused matrix; zero biases.
        bound = math.sqrt(6 / (dim + 3 * inner))
        for proj in (self.q_proj, self.k_proj, self.v_proj):
            nn.init.uniform_(proj.weight, -bound, bound)
            nn.init.zeros_(proj.bias)
        nn.init.zeros_(self.out_proj.bias)

    def _heads(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        return x.view(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        mixed = F.scaled_dot_product_attention(
            self._heads(self.q_proj(q)), self._heads(self.k_proj(k)), self._heads(self.v_proj(v))
        )
        b, _, n, _ = mixed.shape
        return self.out_proj(mixed.transpose(1, 2).reshape(b, n, -1))


class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, tokens -> image, token MLP, image -> tokens; post-LN after each."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, skip_first_layer_pe: bool) -> None:
        super().__init__()
        self.self_attn = AttentionForTwoWayAttentionBlock(dim, num_heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = AttentionForTwoWayAttentionBlock(dim, num_heads, CROSS_ATTENTION_DOWNSAMPLE)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, mlp_dim, dim, 1)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = AttentionForTwoWayAttentionBlock(dim, num_heads, CROSS_ATTENTION_DOWNSAMPLE)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(self, queries: Tensor, keys: Tensor, query_pe: Tensor, key_pe: Tensor) -> tuple[Tensor, Tensor]:
        # Unlike SAM, the query encoding is added to the queries themselves, so it stays in the residual stream.
        if not self.skip_first_layer_pe:
            queries = queries + query_pe
        queries = self.norm1(queries + self.self_attn(queries, queries, queries))
        queries = self.norm2(queries + self.cross_attn_token_to_image(queries + query_pe, keys + key_pe, keys))
        queries = self.norm3(queries + self.mlp(queries))
        keys = self.norm4(keys + self.cross_attn_image_to_token(keys + key_pe, queries + query_pe, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(dim, num_heads, mlp_dim, skip_first_layer_pe=index == 0)
            for index in range(DECODER_DEPTH)
        )
        self.final_attn_token_to_image = AttentionForTwoWayAttentionBlock(dim, num_heads, CROSS_ATTENTION_DOWNSAMPLE)
        self.norm_final_attn = nn.LayerNorm(dim)

    def forward(self, image: Tensor, image_pe: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """Image [B, C, h, w] and its encoding, tokens [B, T, C] -> (tokens [B, T, C], image [B, hw, C])."""
        keys = image.flatten(2).transpose(1, 2)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe)
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(queries + tokens, keys + key_pe, keys))
        return queries, keys


class MaskDecoder(nn.Module):
    """Image embedding + sparse prompts -> mask logits at 4x the embedding grid and predicted IoUs."""

    def __init__(self, config: EfficientSamBackboneConfig) -> None:
        super().__init__()
        dim = config.prompt_dim
        self.num_mask_tokens = NUM_MULTIMASK_OUTPUTS + 1
        self.transformer = TwoWayTransformer(dim, config.decoder_heads, config.decoder_mlp_dim)
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, dim)
        # Two 2x transposed-conv steps (upstream's upscaling dims 64, 32 at width 256), GroupNorm only after the first.
        widths = [dim, dim // 4, dim // 8]
        self.final_output_upscaling_layers = nn.ModuleList(
            nn.Sequential(
                nn.ConvTranspose2d(widths[step], widths[step + 1], kernel_size=2, stride=2),
                nn.GroupNorm(1, widths[step + 1]) if step == 0 else nn.Identity(),
                nn.GELU(),
            )
            for step in range(2)
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLPBlock(dim, dim, widths[-1], 2) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLPBlock(dim, dim, self.num_mask_tokens, 2)

    def forward(
        self, image_embeddings: Tensor, image_pe: Tensor, sparse_prompt_embeddings: Tensor, multimask_output: bool
    ) -> tuple[Tensor, Tensor]:
        """Images [B, C, h, w], encoding [1, C, h, w], prompts [B, Q, k, C] -> masks [B*Q, m, 4h, 4w], IoU [B*Q, m].

        Each image is tiled for its Q queries; m is 3 (tokens 1-3) with `multimask_output`, else 1 (token 0).
        """
        b, q, k, c = sparse_prompt_embeddings.shape
        images = image_embeddings.unsqueeze(1).expand(-1, q, -1, -1, -1).reshape(b * q, *image_embeddings.shape[1:])
        prompts = sparse_prompt_embeddings.reshape(b * q, k, c)
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight]).to(prompts.dtype)
        tokens = torch.cat([output_tokens.expand(b * q, -1, -1), prompts], dim=1)
        hs, src = self.transformer(images, image_pe.expand(b * q, -1, -1, -1), tokens)

        _, _, h, w = images.shape
        upscaled = src.transpose(1, 2).reshape(b * q, c, h, w)
        for layer in self.final_output_upscaling_layers:
            upscaled = layer(upscaled)
        hyper = torch.stack([mlp(hs[:, 1 + index]) for index, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1)
        n, channels, up_h, up_w = upscaled.shape
        masks = (hyper @ upscaled.reshape(n, channels, up_h * up_w)).reshape(n, -1, up_h, up_w)
        iou = self.iou_prediction_head(hs[:, 0])
        chosen = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, chosen], iou[:, chosen]


# ----- the backbone ----------------------------------------------------------------------------------------
class EfficientSamImageBackbone(ImageBackbone):
    """EfficientSAM behind the EVF backbone interface, as EVF-Effi-SAM runs it.

    The projected text vector is the mask decoder's only prompt, fed straight in: EfficientSAM's prompt
    encoder is skipped and there is no dense prompt, so `no_mask_embed` is None. Module names are the
    official ones (`visual_model.` becomes `image_backbone.`, nothing else changes).
    """

    def __init__(self, config: EfficientSamBackboneConfig) -> None:
        super().__init__()
        self.config = config
        self.image_encoder = ImageEncoderViT(config)
        self.prompt_encoder = PromptEncoder(config)
        self.mask_decoder = MaskDecoder(config)

    @property
    def no_mask_embed(self) -> None:
        return None

    def encode(self, pixels: Tensor) -> ImageFeatures:
        return ImageFeatures(embedding=self.image_encoder(pixels))

    def decode(
        self, features: ImageFeatures, image_index: Tensor, prompts: Tensor, multimask_output: bool = False
    ) -> Tensor:
        """Mask logits [N, 4h, 4w]: token 0, or with `multimask_output` the best of 3 by predicted IoU.

        The official forward calls the decoder once per image with that image's N_i prompts as [1, N_i, 1, C]
        and tiles the image per prompt; giving each prompt its image here ([N, 1, k, C]) is the same computation
        for every image of the batch at once.
        """
        embedding = features.embedding[image_index]
        masks, iou = self.mask_decoder(
            embedding,
            self.prompt_encoder.get_dense_pe().to(embedding.dtype),
            prompts.unsqueeze(1).to(embedding.dtype),
            multimask_output,
        )
        if multimask_output:
            return masks[torch.arange(masks.shape[0], device=masks.device), iou.argmax(dim=-1)]
        return masks[:, 0]
