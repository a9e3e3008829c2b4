"""Referring-segmentation metrics as the official eval computes them, correct across processes.

reference/evf-sam-recipe.md §4: per expression, intersection and union of (logit > 0) with the target.
cIoU = sum of intersections / sum of unions over all expressions; gIoU = mean over expressions of
I / (U + 1e-10), an expression scoring 1.0 when U = 0 (empty target, empty prediction). precision_t (P@t) is
the fraction of expressions with IoU >= t (the ReferIt convention, as LAVT and ReLA count it). All
states are sums, so `dist_reduce_fx="sum"` makes the multi-process result equal the single-process one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

PRECISION_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def intersection_and_union(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    pred, target = pred.bool().flatten(), target.bool().flatten()
    return (pred & target).sum(), (pred | target).sum()


class ReferringSegmentationMetrics(Metric):
    full_state_update = False

    def __init__(self, thresholds: Sequence[float] = PRECISION_THRESHOLDS) -> None:
        super().__init__()
        self.thresholds = tuple(thresholds)
        self.add_state("intersection", torch.tensor(0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("union", torch.tensor(0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("iou_sum", torch.tensor(0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("hits", torch.zeros(len(self.thresholds), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: Sequence[Tensor] | Tensor, targets: Sequence[Tensor] | Tensor) -> None:
        """Boolean masks, one per expression: [N, H, W] tensors or lists of [H_n, W_n]."""
        if len(preds) != len(targets):
            raise ValueError(f"{len(preds)} predictions for {len(targets)} targets")
        thresholds = torch.tensor(self.thresholds, dtype=torch.float64, device=self.hits.device)
        for pred, target in zip(preds, targets, strict=True):
            if pred.shape != target.shape:
                raise ValueError(f"prediction of shape {tuple(pred.shape)} for a target of {tuple(target.shape)}")
            inter, union = (v.to(torch.float64) for v in intersection_and_union(pred, target))
            iou = inter / (union + 1e-10) if union > 0 else torch.ones((), dtype=torch.float64, device=inter.device)
            self.intersection += inter
            self.union += union
            self.iou_sum += iou
            self.count += 1
            self.hits += (iou >= thresholds).to(torch.float64)

    def compute(self) -> dict[str, Tensor]:
        count = self.count.clamp(min=1)
        result = {"ciou": self.intersection / self.union.clamp(min=1e-10), "giou": self.iou_sum / count}
        for threshold, hits in zip(self.thresholds, self.hits, strict=True):
            result[f"precision_{threshold}"] = hits / count
        return {key: value.float() for key, value in result.items()}
