"""BEiT-3: a multiway transformer over image patches and text tokens (no maintained package exists).

Matches torchscale's BEiT3 as EVF-SAM uses it (reference/checkpoints.md §2), with the same parameter
names so official weights load without renaming: every Linear and LayerNorm in a layer comes twice,
`.A` for vision tokens and `.B` for text tokens, while attention runs jointly over the concatenated
sequence. Pre-LN with sub-LN (an extra LayerNorm inside attention and inside the FFN), positions
counted from 2 separately per modality (fairseq style), GELU in fp32, attention through SDPA.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class Beit3Config:
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

    @classmethod
    def base(cls) -> Beit3Config:
        return cls(embed_dim=768, depth=12, num_heads=12, ffn_dim=3072)

    @classmethod
    def large(cls) -> Beit3Config:
        return cls()

    @classmethod
    def tiny(cls, vocab_size: int = 256, img_size: int = 64) -> Beit3Config:
        """Small enough to train from scratch on a CPU in minutes."""
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
    def num_vision_tokens(self) -> int:
        """Patches plus the [CLS] token."""
        return (self.img_size // self.patch_size) ** 2 + 1


class Multiway(nn.Module):
    """Two copies of a module: `A` applied to the first `split` tokens (vision), `B` to the rest (text)."""

    def __init__(self, make: type[nn.Module] | object, *args: object, **kwargs: object) -> None:
        super().__init__()
        self.A = make(*args, **kwargs)
        self.B = make(*args, **kwargs)

    def forward(self, x: Tensor, split: int) -> Tensor:
        if split >= x.shape[1]:
            return self.A(x)
        if split <= 0:
            return self.B(x)
        return torch.cat([self.A(x[:, :split]), self.B(x[:, split:])], dim=1)


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.ffn_layernorm = nn.LayerNorm(hidden, eps=eps)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.ffn_layernorm(F.gelu(self.fc1(x).float()).type_as(x)))


class MultiwayAttention(nn.Module):
    def __init__(self, config: Beit3Config) -> None:
        super().__init__()
        dim, eps = config.embed_dim, config.layernorm_eps
        self.num_heads = config.num_heads
        self.q_proj = Multiway(nn.Linear, dim, dim)
        self.k_proj = Multiway(nn.Linear, dim, dim)
        self.v_proj = Multiway(nn.Linear, dim, dim)
        self.out_proj = Multiway(nn.Linear, dim, dim)
        self.inner_attn_ln = Multiway(nn.LayerNorm, dim, eps=eps)

    def forward(self, x: Tensor, split: int, allowed: Tensor) -> Tensor:
        """`allowed` [N or 1, 1, T, T] is True where a query may attend to a key."""
        n, t, d = x.shape
        heads = [
            proj(x, split).view(n, t, self.num_heads, -1).transpose(1, 2)
            for proj in (self.q_proj, self.k_proj, self.v_proj)
        ]
        attended = F.scaled_dot_product_attention(*heads, attn_mask=allowed)
        attended = attended.transpose(1, 2).reshape(n, t, d)
        return self.out_proj(self.inner_attn_ln(attended, split), split)


class EncoderLayer(nn.Module):
    def __init__(self, config: Beit3Config) -> None:
        super().__init__()
        dim, eps = config.embed_dim, config.layernorm_eps
        self.self_attn_layer_norm = Multiway(nn.LayerNorm, dim, eps=eps)
        self.self_attn = MultiwayAttention(config)
        self.final_layer_norm = Multiway(nn.LayerNorm, dim, eps=eps)
        self.ffn = Multiway(FeedForward, dim, config.ffn_dim, eps)

    def forward(self, x: Tensor, split: int, allowed: Tensor) -> Tensor:
        x = x + self.self_attn(self.self_attn_layer_norm(x, split), split, allowed)
        return x + self.ffn(self.final_layer_norm(x, split), split)


class VisionEmbedding(nn.Module):
    def __init__(self, config: Beit3Config) -> None:
        super().__init__()
        dim = config.embed_dim
        self.proj = nn.Conv2d(config.in_chans, dim, kernel_size=config.patch_size, stride=config.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))  # MLM pre-training only; kept for the keys

    def forward(self, pixels: Tensor) -> Tensor:
        patches = self.proj(pixels).flatten(2).transpose(1, 2)
        return torch.cat([self.cls_token.expand(patches.shape[0], -1, -1), patches], dim=1)


class Encoder(nn.Module):
    def __init__(self, config: Beit3Config) -> None:
        super().__init__()
        self.embed_positions = nn.Module()
        self.embed_positions.A = nn.Embedding(config.num_vision_tokens + 2, config.embed_dim)
        self.embed_positions.B = nn.Embedding(config.max_text_positions, config.embed_dim)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.depth))
        self.layer_norm = Multiway(nn.LayerNorm, config.embed_dim, eps=config.layernorm_eps)


class Beit3Encoder(nn.Module):
    """Joint image+text encoder; returns hidden states [N, T, D], vision tokens first, then text."""

    def __init__(self, config: Beit3Config) -> None:
        super().__init__()
        self.config = config
        self.text_embed = nn.Embedding(config.vocab_size, config.embed_dim)
        self.vision_embed = VisionEmbedding(config)
        self.encoder = Encoder(config)
        self.apply(_init_weights)
        nn.init.trunc_normal_(self.vision_embed.cls_token, std=0.02)

    @property
    def num_vision_tokens(self) -> int:
        return self.config.num_vision_tokens

    def forward(
        self,
        pixels: Tensor | None,
        input_ids: Tensor | None,
        text_padding_mask: Tensor | None = None,
        cross_modal_layers: tuple[int, int] | None = None,
    ) -> Tensor:
        """`text_padding_mask` is True at padding; `cross_modal_layers=(i, j)` lets image and text
        tokens attend to each other only in layers i <= l < j (None: every layer, full early fusion).
        `pixels=None` is the text-only forward, `input_ids=None` the vision-only one."""
        if pixels is None and input_ids is None:
            raise ValueError("BEiT-3 needs pixels, input_ids or both")
        parts, padding = [], []
        positions = self.encoder.embed_positions
        if pixels is not None:
            vision = self.vision_embed(pixels)
            index = torch.arange(2, vision.shape[1] + 2, device=vision.device)
            parts.append(vision + positions.A(index))
            padding.append(torch.zeros(vision.shape[:2], dtype=torch.bool, device=vision.device))
        if input_ids is not None:
            text = self.text_embed(input_ids)
            index = torch.arange(2, text.shape[1] + 2, device=text.device)
            parts.append(text + positions.B(index))
            text_padding = (
                text_padding_mask.bool()
                if text_padding_mask is not None
                else torch.zeros(input_ids.shape, dtype=torch.bool, device=input_ids.device)
            )
            padding.append(text_padding)
        x = torch.cat(parts, dim=1)
        pad = torch.cat(padding, dim=1)
        x = x * (~pad).unsqueeze(-1).to(x.dtype)
        split = parts[0].shape[1] if pixels is not None else 0
        joint = (~pad)[:, None, None, :]
        separate = joint & _same_modality(x.shape[1], split, x.device)
        first, last = cross_modal_layers if cross_modal_layers is not None else (0, len(self.encoder.layers))
        for depth, layer in enumerate(self.encoder.layers):
            x = layer(x, split, joint if first <= depth < last else separate)
        return self.encoder.layer_norm(x, split)


def _same_modality(length: int, split: int, device: torch.device) -> Tensor:
    """[1, 1, T, T] True where query and key are both vision or both text tokens."""
    is_text = torch.arange(length, device=device) >= split
    return (is_text[:, None] == is_text[None, :])[None, None]


def _init_weights(module: nn.Module) -> None:
    """BEiT's initialisation (truncated normal, std 0.02) for training from scratch."""
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.trunc_normal_(module.weight, std=0.02)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
