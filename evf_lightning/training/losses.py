"""The paper's mask loss: BCE + Dice, each weight 1.0, averaged over every mask of the micro-batch.

As the official code (inherited from LISA): BCE with logits averaged over the pixels of each mask; Dice
on sigmoid probabilities with prediction and target divided by `dice_scale` before summing (a guard
against fp16 overflow on large images), `1 - (2*sum(p*g) + eps) / (sum(p) + sum(g) + eps)`. Both are
computed at each image's original resolution, so masks arrive as a list of [n_i, H_i, W_i].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class LossConfig:
    bce_weight: float = 1.0
    dice_weight: float = 1.0
    dice_scale: float = 1000.0
    dice_eps: float = 1e-6


class MaskLoss(NamedTuple):
    total: Tensor
    bce: Tensor
    dice: Tensor


def bce_per_mask(logits: Tensor, targets: Tensor) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").flatten(1).mean(1)


def dice_per_mask(logits: Tensor, targets: Tensor, scale: float, eps: float) -> Tensor:
    probs, targets = logits.sigmoid().flatten(1), targets.flatten(1)
    numerator = 2 * (probs / scale * targets).sum(1)
    denominator = (probs / scale).sum(1) + (targets / scale).sum(1)
    return 1 - (numerator + eps) / (denominator + eps)


def evf_loss(logits: Sequence[Tensor], targets: Sequence[Tensor], config: LossConfig = LossConfig()) -> MaskLoss:
    """Mean over all masks of BCE and Dice, in fp32 whatever the autocast state."""
    with torch.autocast(device_type=logits[0].device.type, enabled=False):
        bce = torch.cat([bce_per_mask(p.float(), t.float()) for p, t in zip(logits, targets, strict=True)])
        dice = torch.cat(
            [
                dice_per_mask(p.float(), t.float(), config.dice_scale, config.dice_eps)
                for p, t in zip(logits, targets, strict=True)
            ]
        )
    bce, dice = bce.mean(), dice.mean()
    return MaskLoss(config.bce_weight * bce + config.dice_weight * dice, bce, dice)
