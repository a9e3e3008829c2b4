"""The paper's mask loss: BCE + Dice, each with weight 1.0, averaged over every mask of the micro-batch.

This follows the official code (reference/evf-sam-recipe.md §1; `sigmoid_ce_loss` and `dice_loss` that
EVF-SAM took from LISA):

- BCE with logits, averaged over the pixels of each mask.
- Dice on sigmoid probabilities. Prediction and target are divided by `dice_scale` (1000) *before* the
  sums, then `1 - (2*sum(p*g) + eps) / (sum(p) + sum(g) + eps)`. The division keeps fp16 sums in range.
  It also sets how much `eps` counts. With an empty target the loss is `1 - eps / (sum(p)/scale + eps)`:
  near 0 only when sum(p)/1000 is well below 1e-6 (a very confident empty prediction), else near 1.
- Each term is averaged over *all* masks of the micro-batch, not per image and then over images. An
  image with three expressions counts three times as much as an image with one.

Masks are compared at each image's original resolution, so logits and targets come as lists of
[n_i, H_i, W_i], one entry per image. The loss is always computed in fp32, whatever autocast is doing:
the official code upsamples the logits with `.float()` before the loss, and bf16 keeps only about three
significant digits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

# The official divisor is `num_masks + 1e-8`. Rounded to fp32 it equals num_masks for any count >= 1, so
# it changes no result there; with no mask at all it gives 0 instead of 0/0.
_COUNT_EPS = 1e-8


@dataclass(frozen=True)
class LossConfig:
    """Weights and Dice constants. The defaults are the paper's (§4.2) and the official code's."""

    bce_weight: float = 1.0
    dice_weight: float = 1.0
    dice_scale: float = 1000.0
    dice_eps: float = 1e-6


class MaskLoss(NamedTuple):
    """The weighted total to backpropagate, and the two unweighted terms to log."""

    total: Tensor
    bce: Tensor
    dice: Tensor


def bce_per_mask(logits: Tensor, targets: Tensor) -> Tensor:
    """[n, H, W] logits and {0,1} targets -> [n] BCE, each averaged over its mask's pixels."""
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").flatten(1).mean(1)


def dice_per_mask(logits: Tensor, targets: Tensor, scale: float = 1000.0, eps: float = 1e-6) -> Tensor:
    """[n, H, W] logits and {0,1} targets -> [n] Dice losses, with both sides divided by `scale` first."""
    probs, targets = logits.sigmoid().flatten(1), targets.flatten(1)
    numerator = 2 * (probs / scale * targets).sum(1)
    denominator = (probs / scale).sum(1) + (targets / scale).sum(1)
    return 1 - (numerator + eps) / (denominator + eps)


def evf_loss(
    logits: Sequence[Tensor] | Tensor,
    targets: Sequence[Tensor] | Tensor,
    config: LossConfig = LossConfig(),
) -> MaskLoss:
    """BCE and Dice averaged over all masks, in fp32.

    `logits[i]` and `targets[i]` are image i's [n_i, H_i, W_i] mask logits and targets (bool, integer
    or float 0/1). A single [N, H, W] tensor counts as one image. Images with no expression (n_i = 0)
    are allowed. A micro-batch with no mask at all gives a zero loss that still depends on the logits,
    so backward and DDP's gradient all-reduce run as usual.
    """
    logits = [logits] if isinstance(logits, Tensor) else list(logits)
    targets = [targets] if isinstance(targets, Tensor) else list(targets)
    if not logits or len(logits) != len(targets):
        raise ValueError(f"need one target per logits tensor: {len(logits)} logits, {len(targets)} targets")
    bce_parts, dice_parts = [], []
    with torch.autocast(device_type=logits[0].device.type, enabled=False):
        for index, (pred, target) in enumerate(zip(logits, targets, strict=True)):
            if pred.dim() != 3 or pred.shape != target.shape:
                raise ValueError(
                    f"image {index}: logits {tuple(pred.shape)} and targets {tuple(target.shape)} must "
                    "both be [n, H, W]"
                )
            pred, target = pred.float(), target.to(device=pred.device, dtype=torch.float32)
            bce_parts.append(bce_per_mask(pred, target))
            dice_parts.append(dice_per_mask(pred, target, config.dice_scale, config.dice_eps))
        # Sums over an empty batch are still functions of the logits, so backward works with no mask.
        count = sum(part.numel() for part in bce_parts) + _COUNT_EPS
        bce = torch.cat(bce_parts).sum() / count
        dice = torch.cat(dice_parts).sum() / count
        return MaskLoss(config.bce_weight * bce + config.dice_weight * dice, bce, dice)
