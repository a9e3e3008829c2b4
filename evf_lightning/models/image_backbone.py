"""The one interface every image backbone (SAM, SAM-2, EfficientSAM) offers to the EVF composition."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal, Protocol

from torch import Tensor, nn

from evf_lightning.models.image_features import ImageFeatures

Resize = Literal["longest_pad", "stretch", "longest_then_stretch"]


class ImageBackboneConfig(Protocol):
    """What the rest of the house may read from any backbone config.

    `family` names the official checkpoint layout (and discriminates configs in YAML); `image_size` and
    `resize` drive the data module's preprocessing; `prompt_dim` is the width the projector maps to.
    """

    family: str
    image_size: int
    resize: Resize
    prompt_dim: int


class ImageBackbone(nn.Module, ABC):
    """encode(pixels) -> ImageFeatures; decode(features, prompts) -> low-resolution mask logits.

    The freeze policy addresses three parts by these attribute names: `image_encoder` (frozen in every
    published recipe), `mask_decoder`, and `no_mask_embed`, the learned dense prompt (None where the
    backbone has no dense prompt, as EfficientSAM).
    """

    image_encoder: nn.Module
    mask_decoder: nn.Module

    @property
    @abstractmethod
    def no_mask_embed(self) -> nn.Module | None: ...

    @abstractmethod
    def encode(self, pixels: Tensor) -> ImageFeatures:
        """Normalised pixels [B, 3, S, S] -> the features the decoder attends to."""

    def encode_tensors(self) -> dict[str, Tensor]:
        """Every parameter and buffer `encode` reads, by state-dict name: what a cache of its output depends on.

        The image encoder's, unless a backbone's `encode` reads more (SAM-2's decoder skip projections).
        """
        return named_tensors(self.image_encoder, "image_encoder")


def named_tensors(module: nn.Module, prefix: str) -> dict[str, Tensor]:
    """`module`'s parameters and buffers under `prefix`, as Parameters where they are (so requires_grad shows)."""
    return {f"{prefix}.{name}": tensor for name, tensor in module.state_dict(keep_vars=True).items()}

    @abstractmethod
    def decode(
        self, features: ImageFeatures, image_index: Tensor, prompts: Tensor, multimask_output: bool = False
    ) -> Tensor:
        """Mask logits [N, h, w] for N prompts [N, k, C]; `image_index[n]` is prompt n's image."""
