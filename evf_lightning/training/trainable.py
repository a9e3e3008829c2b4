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


def _groups(model: EvfModel, parts: TrainableParts) -> list[tuple[bool, nn.Module]]:
    backbone = model.image_backbone
    groups: list[tuple[bool, nn.Module | None]] = [
        (parts.image_encoder, backbone.image_encoder),
        (parts.mask_decoder, backbone.mask_decoder),
        (parts.no_mask_embed, backbone.no_mask_embed),
        (parts.prompt_encoder, model.prompt_encoder),
        (parts.projector, model.projector),
    ]
    return [(trainable, module) for trainable, module in groups if module is not None]


def apply_trainable(model: EvfModel, parts: TrainableParts) -> None:
    """Set requires_grad on every parameter; anything not named by a part stays frozen."""
    model.requires_grad_(False)
    for trainable, module in _groups(model, parts):
        module.requires_grad_(trainable)


def check_frozen(model: EvfModel, parts: TrainableParts) -> None:
    """Raise unless exactly the parameters `parts` trains have requires_grad, and no frozen one holds a gradient.

    Called before frozen parameters are left out of the optimizer: a weight that something set trainable
    again after `apply_trainable` (a loader, a wrapper) would otherwise never be updated, silently.
    """
    expected: dict[nn.Parameter, bool] = dict.fromkeys(model.parameters(), False)
    for trainable, module in _groups(model, parts):
        expected.update(dict.fromkeys(module.parameters(), trainable))
    names = {p: n for n, p in model.named_parameters()}
    wrong = [names[p] for p, trainable in expected.items() if p.requires_grad != trainable]
    if wrong:
        raise ValueError(f"requires_grad disagrees with {parts} for {len(wrong)} parameters, e.g. {wrong[:3]}")
    graded = [names[p] for p in expected if not p.requires_grad and p.grad is not None]
    if graded:
        raise ValueError(f"frozen parameters hold gradients, e.g. {graded[:3]}")
