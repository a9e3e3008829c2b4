"""Referring-segmentation metrics computed as the official eval does, and correct across processes.

reference/evf-sam-recipe.md §4 (EVF-SAM eval.py with LISA's `intersectionAndUnionGPU`): the prediction
is logit > 0 at the original image size. For each expression we count the intersection I and union U
of prediction and target. Then:

- cIoU = sum(I) / (sum(U) + 1e-10) over all expressions. This is the paper's headline number.
- gIoU = mean over expressions of I / (U + 1e-10). An expression with U == 0 (empty target and empty
  prediction) scores 1.0. An empty target with a non-empty prediction has I = 0 and scores 0.
- precision_t (P@t) = fraction of expressions with IoU >= t, for t in 0.5..0.9. Here IoU is the exact
  ratio I / U, and 1.0 when U == 0, as in gIoU. The comparison is `>=` because the referring-
  segmentation eval scripts that define P@X (the RMI -> LAVT lineage) count `I / U >= t`. With the
  exact ratio, an IoU of exactly t counts as a hit. With gIoU's `+ 1e-10` it would fall just short, so
  P@0.5 would miss I = 1, U = 2.

Every state is a sum (int64 pixel counts, a float64 IoU sum, int64 hit counts), reduced with
`dist_reduce_fx="sum"`. So a multi-process compute() equals the single-process one on the same
expressions, and splits with billions of pixels lose no precision. The official code padded ranks with
repeated images (DistributedSampler); that is the sampler's business, not the metric's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

PRECISION_THRESHOLDS: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)
_UNION_EPS = 1e-10  # the official eval's epsilon in cIoU and gIoU


def precision_key(threshold: float) -> str:
    """Name of the P@t entry in `compute()`. It has no '@' because MLflow metric names cannot hold one."""
    return f"precision_{threshold}"


def logits_to_masks(logits: Tensor | Sequence[Tensor]) -> Tensor | list[Tensor]:
    """Mask logits -> boolean masks (logit > 0, i.e. probability > 0.5), as the official eval does."""
    if isinstance(logits, Tensor):
        return logits > 0
    return [item > 0 for item in logits]


def intersection_and_union(preds: Tensor | Sequence[Tensor], targets: Tensor | Sequence[Tensor]) -> Tensor:
    """Per expression, its intersection and union pixel counts: an int64 tensor [N, 2].

    Masks are boolean (or integer, where nonzero is foreground). They come as an [N, H, W] tensor or as a
    list of [H_n, W_n] masks of any sizes. Floating-point input is refused: passing logits by mistake
    would count every nonzero logit as foreground.
    """
    if isinstance(preds, Tensor) != isinstance(targets, Tensor):
        raise TypeError("preds and targets must both be [N, H, W] tensors or both be lists of [H, W] masks")
    if len(preds) != len(targets):
        raise ValueError(f"{len(preds)} predictions for {len(targets)} targets")
    if isinstance(preds, Tensor):
        _check_pair(preds, targets, "[N, H, W]", 3)
        pred, target = preds.bool().flatten(1), targets.bool().flatten(1)
        return torch.stack([(pred & target).sum(1), (pred | target).sum(1)], dim=1).long()
    counts = []
    for index, (pred, target) in enumerate(zip(preds, targets, strict=True)):
        _check_pair(pred, target, f"[H, W] (expression {index})", 2)
        pred, target = pred.bool(), target.bool()
        counts.append(torch.stack([(pred & target).sum(), (pred | target).sum()]))
    if not counts:
        return torch.zeros(0, 2, dtype=torch.long)
    return torch.stack(counts).long()


def _check_pair(pred: Tensor, target: Tensor, expected: str, dims: int) -> None:
    if pred.is_floating_point() or target.is_floating_point():
        raise TypeError(f"masks must be boolean, not {pred.dtype}/{target.dtype}: use logits_to_masks()")
    if pred.dim() != dims or pred.shape != target.shape:
        raise ValueError(
            f"expected prediction and target of the same shape {expected}; "
            f"got {tuple(pred.shape)} and {tuple(target.shape)}"
        )


class ReferringSegmentationMetrics(Metric):
    """cIoU, gIoU and P@t over all expressions seen, synced across processes by summing."""

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    intersection: Tensor
    union: Tensor
    iou_sum: Tensor
    count: Tensor
    hits: Tensor

    def __init__(self, thresholds: Sequence[float] = PRECISION_THRESHOLDS) -> None:
        super().__init__()
        self.thresholds = tuple(float(t) for t in thresholds)
        long, double = torch.int64, torch.float64
        self.add_state("intersection", torch.zeros((), dtype=long), dist_reduce_fx="sum")
        self.add_state("union", torch.zeros((), dtype=long), dist_reduce_fx="sum")
        self.add_state("iou_sum", torch.zeros((), dtype=double), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=long), dist_reduce_fx="sum")
        self.add_state("hits", torch.zeros(len(self.thresholds), dtype=long), dist_reduce_fx="sum")

    def update(self, preds: Tensor | Sequence[Tensor], targets: Tensor | Sequence[Tensor]) -> None:
        """Add expressions: boolean [N, H, W] tensors, or lists of [H_n, W_n] masks of varying sizes."""
        counts = intersection_and_union(preds, targets).to(self.intersection.device)
        inter, union = counts[:, 0], counts[:, 1]
        empty = union == 0
        inter_f, union_f = inter.double(), union.double()
        giou = torch.where(empty, 1.0, inter_f / (union_f + _UNION_EPS))
        exact = torch.where(empty, 1.0, inter_f / union_f.clamp(min=1))
        thresholds = torch.tensor(self.thresholds, dtype=torch.float64, device=exact.device)
        self.intersection += inter.sum()
        self.union += union.sum()
        self.iou_sum += giou.sum()
        self.count += counts.shape[0]
        self.hits += (exact[:, None] >= thresholds).sum(0)

    def compute(self) -> dict[str, Tensor]:
        """{"ciou", "giou", "precision_0.5", ...} as float32 scalars; 0 before any expression is seen."""
        count = self.count.clamp(min=1).double()
        result = {
            "ciou": self.intersection.double() / (self.union.double() + _UNION_EPS),
            "giou": self.iou_sum / count,
        }
        for threshold, hits in zip(self.thresholds, self.hits, strict=True):
            result[precision_key(threshold)] = hits.double() / count
        return {key: value.float() for key, value in result.items()}
