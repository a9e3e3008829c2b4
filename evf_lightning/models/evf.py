"""EVF: an image backbone prompted by a projected vision-language feature.

The composition is the same for every variant: the prompt encoder reads the small image and the
expression, the projector maps its feature to the backbone's prompt width, and that single vector is the
only sparse prompt of the mask decoder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from torch import Tensor, nn

from evf_lightning.models.beit3 import Beit3Config
from evf_lightning.models.efficient_sam import EfficientSamBackboneConfig, EfficientSamImageBackbone
from evf_lightning.models.hf_prompt_encoder import (
    ClipPromptConfig,
    ClipPromptEncoder,
    HfTextPromptConfig,
    HfTextPromptEncoder,
    ViltPromptConfig,
    ViltPromptEncoder,
)
from evf_lightning.models.image_backbone import ImageBackbone
from evf_lightning.models.image_features import ImageFeatures
from evf_lightning.models.prompt_encoder import Beit3PromptConfig, Beit3PromptEncoder
from evf_lightning.models.sam import SamBackboneConfig, SamImageBackbone
from evf_lightning.models.sam2 import Sam2BackboneConfig, Sam2ImageBackbone

# Every backbone family: its config (told apart in YAML by its `family` field) and the module it builds.
BackboneConfig = Union[  # noqa: UP007 (one line per family)
    SamBackboneConfig,
    Sam2BackboneConfig,
    EfficientSamBackboneConfig,
]
BACKBONES: dict[type, type[ImageBackbone]] = {
    SamBackboneConfig: SamImageBackbone,
    Sam2BackboneConfig: Sam2ImageBackbone,
    EfficientSamBackboneConfig: EfficientSamImageBackbone,
}


# Every prompt encoder (told apart in YAML by its `kind` field; BEiT-3 when it has none) and its module.
PromptEncoderConfig = Union[  # noqa: UP007 (one line per kind)
    Beit3PromptConfig,
    HfTextPromptConfig,
    ClipPromptConfig,
    ViltPromptConfig,
]
PROMPT_ENCODERS: dict[type, type[nn.Module]] = {
    Beit3PromptConfig: Beit3PromptEncoder,
    HfTextPromptConfig: HfTextPromptEncoder,
    ClipPromptConfig: ClipPromptEncoder,
    ViltPromptConfig: ViltPromptEncoder,
}


# `kind` -> config class: a parsed config keeps its fields but not its class, and `kind` names it again.
PROMPT_ENCODER_KINDS: dict[str, type] = {cls.__dataclass_fields__["kind"].default: cls for cls in PROMPT_ENCODERS}


def _build(config: object, table: dict[type, type[nn.Module]], what: str) -> nn.Module:
    if type(config) not in table:
        raise TypeError(f"no {what} for {type(config).__name__}; known: {[c.__name__ for c in table]}")
    return table[type(config)](config)


def build_image_backbone(config: BackboneConfig) -> ImageBackbone:
    return _build(config, BACKBONES, "image backbone")


def build_prompt_encoder(config: PromptEncoderConfig) -> nn.Module:
    """A module mapping (small image, token ids, attention mask) to [N, width] features, `width` its attribute."""
    return _build(config, PROMPT_ENCODERS, "prompt encoder")


@dataclass(frozen=True)
class EvfModelConfig:
    """Backbone + prompt encoder; the projector's widths follow from the two.

    The backbone has no default: in YAML its `family` field picks the config class (sam, sam2, effi).
    """

    image_backbone: BackboneConfig
    prompt_encoder: PromptEncoderConfig = field(default_factory=Beit3PromptConfig)
    multimask_output: bool = False

    @classmethod
    def evf_sam(cls) -> EvfModelConfig:
        """YxZhang/evf-sam and evf-sam-multitask: SAM ViT-H + BEiT-3-L (1.32B parameters)."""
        return cls(SamBackboneConfig.vit_h(), Beit3PromptConfig(Beit3Config.large()))

    @classmethod
    def evf_sam2(cls, multitask: bool = False) -> EvfModelConfig:
        """YxZhang/evf-sam2, or with `multitask` evf-sam2-multitask: SAM-2 Hiera-L + BEiT-3-L (898M parameters).

        The two differ only in how they were run (evf-sam-recipe.md §1-2): the multitask checkpoint wants the
        stretch resize and the best of three masks by predicted IoU.
        """
        backbone = Sam2BackboneConfig(resize="stretch" if multitask else "longest_then_stretch")  # Hiera-L
        return cls(backbone, Beit3PromptConfig(Beit3Config.large()), multimask_output=multitask)

    @classmethod
    def evf_effi_sam_l(cls) -> EvfModelConfig:
        """EVF-Effi-SAM-L: EfficientSAM-S + BEiT-3-L (700M parameters); no public checkpoint."""
        return cls(EfficientSamBackboneConfig.vit_s(), Beit3PromptConfig(Beit3Config.large()))

    @classmethod
    def evf_effi_sam_b(cls) -> EvfModelConfig:
        """EVF-Effi-SAM-B: EfficientSAM-T + BEiT-3-B (232M parameters); no public checkpoint."""
        return cls(EfficientSamBackboneConfig.vit_t(), Beit3PromptConfig(Beit3Config.base()))

    @classmethod
    def tiny(cls, vocab_size: int = 256, image_size: int = 128, beit_image_size: int = 64) -> EvfModelConfig:
        """A model that trains in minutes on a CPU; what tests and the quickstart use."""
        return cls(
            SamBackboneConfig.tiny(image_size=image_size),
            Beit3PromptConfig(Beit3Config.tiny(vocab_size=vocab_size, img_size=beit_image_size)),
        )


class Projector(nn.Sequential):
    """Linear(d, d) -> ReLU -> Linear(d, prompt_dim): the official `text_hidden_fcs.0`."""

    def __init__(self, width: int, prompt_dim: int) -> None:
        super().__init__(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, prompt_dim))


class EvfModel(nn.Module):
    def __init__(self, config: EvfModelConfig) -> None:
        super().__init__()
        self.config = config
        self.image_backbone = build_image_backbone(config.image_backbone)
        self.prompt_encoder = build_prompt_encoder(config.prompt_encoder)
        self.projector = Projector(self.prompt_encoder.width, config.image_backbone.prompt_dim)

    def encode_image(self, pixels: Tensor) -> ImageFeatures:
        return self.image_backbone.encode(pixels)

    def encode_prompts(self, pixels: Tensor, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Prompt vectors [N, 1, C]; `pixels` holds one small image per expression."""
        return self.projector(self.prompt_encoder(pixels, input_ids, attention_mask)).unsqueeze(1)

    def forward(
        self,
        sam_pixels: Tensor | None,
        beit_pixels: Tensor,
        input_ids: Tensor,
        attention_mask: Tensor,
        image_index: Tensor,
        image_features: ImageFeatures | None = None,
    ) -> Tensor:
        """Low-resolution mask logits [N, h, w], one per expression.

        Images are encoded once per batch and shared by all of their expressions through
        `image_index`; pass `image_features` to skip the image encoder (e.g. from a cache).
        """
        features = image_features if image_features is not None else self.encode_image(sam_pixels)
        prompts = self.encode_prompts(beit_pixels[image_index], input_ids, attention_mask)
        return self.image_backbone.decode(features, image_index, prompts, self.config.multimask_output)
