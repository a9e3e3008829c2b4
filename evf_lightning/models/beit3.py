"""BEiT-3: a multiway transformer over image patches and text tokens, written here.

No maintained package ships it (torchscale pins old timm/fairscale), so this is a from-scratch
module that behaves like torchscale's `BEiT3` at the settings EVF-SAM uses (reference/checkpoints.md
§2) and carries the same parameter names, so official weights load with `strict=True` and without
renaming.

The shape of the network:

* every Linear and LayerNorm inside a layer exists twice, `.A` (vision expert) for the first
  `split` tokens and `.B` (language expert) for the rest, while attention is one joint softmax over
  the concatenated sequence;
* pre-LN with sub-LN: an extra LayerNorm before `out_proj` and another between `fc1` and `fc2`;
* learned absolute positions counted fairseq style, from 2, separately for each modality;
* GELU in fp32, attention through `scaled_dot_product_attention`, no dropout (EVF trains with 0).

Fusion timing is a forward argument (`cross_modal_layers`), not a different module, so the paper's
"fuse only in some layers" ablation reuses the very same weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# fairseq reserves position ids 0 and 1 (padding); BEiT-3 kept the offset, so row 2 is the first token.
POSITION_OFFSET = 2


@dataclass(frozen=True)
class Beit3Config:
    """Sizes of a BEiT-3 encoder; frozen so it can be a config default and a dict key.

    `max_text_positions` counts the two reserved rows, so text may be at most that minus 2 tokens long.
    """

    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    ffn_dim: int = 4096
    vocab_size: int = 64010
    img_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    max_text_positions: int = 1024
    layernorm_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        if self.max_text_positions <= POSITION_OFFSET:
            raise ValueError(f"max_text_positions must be > {POSITION_OFFSET}: {self.max_text_positions}")

    @classmethod
    def base(cls) -> Beit3Config:
        """BEiT-3 B (beit3_base_patch16_224): the encoder of EVF-Effi-SAM-B."""
        return cls(embed_dim=768, depth=12, num_heads=12, ffn_dim=3072)

    @classmethod
    def large(cls) -> Beit3Config:
        """BEiT-3 L (beit3_large_patch16_224): the encoder of every other released EVF-SAM."""
        return cls(embed_dim=1024, depth=24, num_heads=16, ffn_dim=4096)

    @classmethod
    def tiny(cls, vocab_size: int = 256, img_size: int = 64) -> Beit3Config:
        """Small enough to build, run and train in tests and CPU quickstarts (img 64 → 4x4 patches)."""
        return cls(
            embed_dim=64,
            depth=2,
            num_heads=4,
            ffn_dim=128,
            vocab_size=vocab_size,
            img_size=img_size,
            max_text_positions=64,
        )

    @property
    def num_patches(self) -> int:
        return (self.img_size // self.patch_size) ** 2

    @property
    def num_vision_tokens(self) -> int:
        """Image [CLS] plus patches: the length of the vision part of the sequence (197 at 224/16)."""
        return self.num_patches + 1


class Multiway(nn.Module):
    """A vision expert `A` for tokens before `split` and a language expert `B` for the rest.

    Both experts are built from the same constructor call, so they start as independent copies.
    """

    def __init__(self, build: type[nn.Module], *args: object, **kwargs: object) -> None:
        super().__init__()
        self.A = build(*args, **kwargs)
        self.B = build(*args, **kwargs)

    def forward(self, x: Tensor, split: int) -> Tensor:
        """`x` is [N, T, ...]; `split >= T` means vision only, `split <= 0` text only."""
        if split >= x.shape[1]:
            return self.A(x)
        if split <= 0:
            return self.B(x)
        return torch.cat([self.A(x[:, :split]), self.B(x[:, split:])], dim=1)


class FeedForward(nn.Module):
    """fc1 → GELU (fp32, as torchscale, so half precision does not change the activation) → LN → fc2."""

    def __init__(self, dim: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.ffn_layernorm = nn.LayerNorm(hidden, eps=eps)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        hidden = self.fc1(x)
        hidden = F.gelu(hidden.float()).type_as(hidden)
        return self.fc2(self.ffn_layernorm(hidden))


class MultiwayAttention(nn.Module):
    """Joint self-attention whose projections and sub-LN are multiway."""

    def __init__(self, config: Beit3Config) -> None:
        super().__init__()
        dim = config.embed_dim
        self.num_heads = config.num_heads
        self.q_proj = Multiway(nn.Linear, dim, dim)
        self.k_proj = Multiway(nn.Linear, dim, dim)
        self.v_proj = Multiway(nn.Linear, dim, dim)
        self.out_proj = Multiway(nn.Linear, dim, dim)
        self.inner_attn_ln = Multiway(nn.LayerNorm, dim, eps=config.layernorm_eps)

    def forward(self, x: Tensor, split: int, allowed: Tensor | None) -> Tensor:
        """`allowed` broadcasts to [N, heads, T, T], True where a query may look at a key (None: all)."""
        n, t, d = x.shape

        def heads(proj: Multiway) -> Tensor:
            return proj(x, split).view(n, t, self.num_heads, d // self.num_heads).transpose(1, 2)

        # SDPA scales by head_dim**-0.5, as torchscale does to q before the product.
        q, k, v = heads(self.q_proj), heads(self.k_proj), heads(self.v_proj)
        mixed = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        mixed = mixed.transpose(1, 2).reshape(n, t, d)
        return self.out_proj(self.inner_attn_ln(mixed, split), split)


class EncoderLayer(nn.Module):
    """Pre-LN block: x + attn(LN(x)), then x + ffn(LN(x)), each LN and FFN multiway."""

    def __init__(self, config: Beit3Config) -> None:
        super().__init__()
        dim, eps = config.embed_dim, config.layernorm_eps
        self.self_attn = MultiwayAttention(config)
        self.self_attn_layer_norm = Multiway(nn.LayerNorm, dim, eps=eps)
        self.ffn = Multiway(FeedForward, dim, config.ffn_dim, eps)
        self.final_layer_norm = Multiway(nn.LayerNorm, dim, eps=eps)

    def forward(self, x: Tensor, split: int, allowed: Tensor | None) -> Tensor:
        x = x + self.self_attn(self.self_attn_layer_norm(x, split), split, allowed)
        return x + self.ffn(self.final_layer_norm(x, split), split)


class VisionEmbedding(nn.Module):
    """Non-overlapping conv patches, flattened row-major, with the image [CLS] in front."""

    def __init__(self, config: Beit3Config) -> None:
        super().__init__()
        dim = config.embed_dim
        self.proj = nn.Conv2d(config.in_chans, dim, kernel_size=config.patch_size, stride=config.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        # Used only by BEiT-3's masked-image pre-training; kept so checkpoints round-trip key for key.
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))

    def forward(self, pixels: Tensor) -> Tensor:
        patches = self.proj(pixels.to(self.proj.weight.dtype)).flatten(2).transpose(1, 2)
        return torch.cat([self.cls_token.expand(patches.shape[0], -1, -1).to(patches.dtype), patches], dim=1)


class PositionTables(nn.Module):
    """Learned positions: `A` for vision (tokens + 2 reserved rows), `B` for text."""

    def __init__(self, config: Beit3Config) -> None:
        super().__init__()
        self.A = nn.Embedding(config.num_vision_tokens + POSITION_OFFSET, config.embed_dim)
        self.B = nn.Embedding(config.max_text_positions, config.embed_dim)

    @staticmethod
    def lookup(table: nn.Embedding, length: int, device: torch.device) -> Tensor:
        """[1, length, D]: rows 2 .. length+1 of `table`.

        Calls the Embedding module rather than slicing its weight, so parameter-gathering hooks
        (DeepSpeed ZeRO-3) see the use.
        """
        if length + POSITION_OFFSET > table.num_embeddings:
            raise ValueError(
                f"sequence of {length} tokens needs {length + POSITION_OFFSET} position rows, "
                f"the table has {table.num_embeddings}"
            )
        return table(torch.arange(POSITION_OFFSET, POSITION_OFFSET + length, device=device)).unsqueeze(0)


class Encoder(nn.Module):
    """Container that gives the torchscale names `encoder.{embed_positions,layers,layer_norm}`."""

    def __init__(self, config: Beit3Config) -> None:
        super().__init__()
        self.embed_positions = PositionTables(config)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.depth))
        self.layer_norm = Multiway(nn.LayerNorm, config.embed_dim, eps=config.layernorm_eps)


class Beit3Encoder(nn.Module):
    """BEiT-3 backbone: (image, token ids) → hidden states [N, T, D], vision tokens first, then text.

    The image [CLS] is `out[:, 0]` and the text [CLS] (`<s>`) is `out[:, num_vision_tokens]`
    (or `out[:, 0]` in the text-only forward).
    """

    def __init__(self, config: Beit3Config) -> None:
        super().__init__()
        self.config = config
        self.text_embed = nn.Embedding(config.vocab_size, config.embed_dim)
        self.vision_embed = VisionEmbedding(config)
        self.encoder = Encoder(config)
        self.apply(_init_weights)
        _trunc_normal(self.vision_embed.cls_token)
        _trunc_normal(self.vision_embed.mask_token)

    @property
    def num_vision_tokens(self) -> int:
        """Length of the vision part ([CLS] + patches) of a joint sequence = index of the text [CLS]."""
        return self.config.num_vision_tokens

    def forward(
        self,
        pixels: Tensor | None,
        input_ids: Tensor | None,
        text_padding_mask: Tensor | None = None,
        cross_modal_layers: tuple[int, int] | None = None,
    ) -> Tensor:
        """Encode an image, a text, or both jointly.

        Args:
            pixels: [N, C, H, W] at `config.img_size`, or None for the text-only forward (language
                expert alone, BEiT-3's "text" mode).
            input_ids: [N, L] token ids, or None for the vision-only forward.
            text_padding_mask: [N, L] bool, True at padding; padded tokens are zeroed before layer 0
                and never attended to.
            cross_modal_layers: (i, j) lets image and text tokens see each other only in layers
                i <= layer < j, attention staying within each modality elsewhere; None fuses in every
                layer (the released models). (0, 0) gives two independent unimodal encoders.

        Returns:
            [N, T, D] after the final multiway LayerNorm, T = num_vision_tokens (if pixels) + L (if text).
        """
        if pixels is None and input_ids is None:
            raise ValueError("BEiT-3 needs pixels, input_ids or both")
        if text_padding_mask is not None and input_ids is None:
            raise ValueError("text_padding_mask given without input_ids")
        first, last = _fusion_window(cross_modal_layers, self.config.depth)
        positions = self.encoder.embed_positions

        parts: list[Tensor] = []
        if pixels is not None:
            vision = self.vision_embed(pixels)
            if vision.shape[1] != self.num_vision_tokens:
                raise ValueError(
                    f"pixels {tuple(pixels.shape[-2:])} give {vision.shape[1]} tokens, the model expects "
                    f"{self.num_vision_tokens} ({self.config.img_size}² images)"
                )
            parts.append(vision + positions.lookup(positions.A, vision.shape[1], vision.device))
        if input_ids is not None:
            text = self.text_embed(input_ids)
            parts.append(text + positions.lookup(positions.B, text.shape[1], text.device))
        x = torch.cat(parts, dim=1) if len(parts) == 2 else parts[0]
        # Where the experts switch: all vision (split = T), all text (0), or after the image tokens.
        split = x.shape[1] if input_ids is None else (self.num_vision_tokens if pixels is not None else 0)

        key_ok = None  # [N, 1, 1, T] True for real tokens; None when nothing is padded
        if text_padding_mask is not None:
            if text_padding_mask.shape != input_ids.shape:
                raise ValueError(f"padding {tuple(text_padding_mask.shape)} != ids {tuple(input_ids.shape)}")
            real = ~text_padding_mask.to(device=x.device, dtype=torch.bool)
            if split > 0:
                real = torch.cat([real.new_ones(real.shape[0], split), real], dim=1)
            x = x * real.unsqueeze(-1).to(x.dtype)
            key_ok = real[:, None, None, :]

        fused_mask = key_ok
        unfused_mask = key_ok
        if 0 < split < x.shape[1] and (first, last) != (0, self.config.depth):
            same = _same_modality(x.shape[1], split, x.device)
            unfused_mask = same if key_ok is None else same & key_ok

        for index, layer in enumerate(self.encoder.layers):
            x = layer(x, split, fused_mask if first <= index < last else unfused_mask)
        return self.encoder.layer_norm(x, split)


def _fusion_window(cross_modal_layers: tuple[int, int] | None, depth: int) -> tuple[int, int]:
    """Validate `cross_modal_layers` into a half-open layer range (None → every layer)."""
    if cross_modal_layers is None:
        return 0, depth
    first, last = (int(v) for v in cross_modal_layers)
    if not 0 <= first <= last <= depth:
        raise ValueError(f"cross_modal_layers {cross_modal_layers} must satisfy 0 <= i <= j <= {depth}")
    return first, last


def _same_modality(length: int, split: int, device: torch.device) -> Tensor:
    """[1, 1, T, T] block-diagonal mask: True where query and key are both vision or both text."""
    is_text = torch.arange(length, device=device) >= split
    return (is_text[:, None] == is_text[None, :])[None, None]


def _trunc_normal(tensor: Tensor, std: float = 0.02) -> None:
    # unilm's BEiT-3 truncates at one standard deviation, which shrinks the effective std to ~0.011: from
    # scratch the tiny quickstart model then learns markedly slower (val cIoU 0.29 vs 0.40 after 500 steps).
    # Truncating at 2 (timm's BEiT default, practically untruncated) is the from-scratch choice; pretrained
    # weights replace this init anyway.
    nn.init.trunc_normal_(tensor, std=std)


def _init_weights(module: nn.Module) -> None:
    """BEiT-3's from-scratch initialisation; irrelevant when pretrained weights are loaded."""
    if isinstance(module, (nn.Linear, nn.Conv2d, nn.Embedding)):
        _trunc_normal(module.weight)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
