"""What trains: the paper's freeze policy (Table 6) as configuration."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from evf_lightning.models.evf import EvfModel


@dataclass(frozen=True)
class TrainableParts:
    """Which parts of the model receive gradients.

    Defaults are the released EVF-SAM recipe: the SAM image encoder frozen; the mask decoder, SAM's
    `no_mask_embed` (the only prompt-encoder weight on the text path), BEiT-3 and the projector trained.
    """

    image_encoder: bool = False
    mask_decoder: bool = True
    no_mask_embed: bool = True
    prompt_encoder: bool = True
    projector: bool = True


def apply_trainable(model: EvfModel, parts: TrainableParts) -> None:
    """Set requires_grad on every parameter; anything not named by a part stays frozen."""
    model.requires_grad_(False)
    backbone = model.image_backbone
    groups: list[tuple[bool, nn.Module | None]] = [
        (parts.image_encoder, backbone.image_encoder),
        (parts.mask_decoder, backbone.mask_decoder),
        (parts.no_mask_embed, backbone.no_mask_embed),
        (parts.prompt_encoder, model.prompt_encoder),
        (parts.projector, model.projector),
    ]
    for trainable, module in groups:
        if module is not None:
            module.requires_grad_(trainable)
