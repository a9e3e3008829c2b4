"""Metrics against an independent NumPy computation of the official eval (reference/evf-sam-recipe.md §4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evf_lightning.training.metrics import (
    PRECISION_THRESHOLDS,
    ReferringSegmentationMetrics,
    logits_to_masks,
    precision_key,
)


def numpy_reference(preds: list[np.ndarray], targets: list[np.ndarray]) -> dict[str, float]:
    """Expression by expression, as eval.py's loop and the P@X scripts write it."""
    sum_i = sum_u = giou_sum = 0.0
    hits = dict.fromkeys(PRECISION_THRESHOLDS, 0)
    for pred, target in zip(preds, targets, strict=True):
        inter = float(np.logical_and(pred, target).sum())
        union = float(np.logical_or(pred, target).sum())
        sum_i, sum_u = sum_i + inter, sum_u + union
        giou_sum += 1.0 if union == 0 else inter / (union + 1e-10)
        iou = 1.0 if union == 0 else inter / union
        for t in PRECISION_THRESHOLDS:
            hits[t] += iou >= t
    out = {"ciou": sum_i / (sum_u + 1e-10), "giou": giou_sum / len(preds)}
    out.update({f"precision_{t}": hits[t] / len(preds) for t in PRECISION_THRESHOLDS})
    return out


def random_masks(seed: int, count: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Masks of varying sizes and overlaps, with both kinds of empty target every seven expressions."""
    rng = np.random.default_rng(seed)
    preds, targets = [], []
    for i in range(count):
        h, w = rng.integers(5, 40, size=2)
        target = rng.random((h, w)) < rng.uniform(0.05, 0.6)
        keep = rng.random((h, w)) < rng.uniform(0.3, 1.0)  # how much of the target the prediction copies
        pred = np.where(keep, target, rng.random((h, w)) < 0.2)
        if i % 7 == 0:
            target[:], pred[:] = False, False  # empty target, empty prediction: IoU 1
        elif i % 7 == 1:
            target[:] = False  # empty target, non-empty prediction: IoU 0
            pred[0, 0] = True
        preds.append(pred)
        targets.append(target)
    return preds, targets


def as_floats(result: dict[str, torch.Tensor]) -> dict[str, float]:
    return {key: float(value) for key, value in result.items()}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lists_of_mixed_sizes_match_numpy_with_empty_masks(seed: int) -> None:
    preds, targets = random_masks(seed, 70)
    metric = ReferringSegmentationMetrics()
    for start in range(0, 70, 13):  # several updates, each a list of different image sizes
        metric.update(
            [torch.from_numpy(p) for p in preds[start : start + 13]],
            [torch.from_numpy(t) for t in targets[start : start + 13]],
        )
    result, expected = as_floats(metric.compute()), numpy_reference(preds, targets)
    assert result.keys() == expected.keys()
    assert list(result) == ["ciou", "giou", *(precision_key(t) for t in PRECISION_THRESHOLDS)]
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-7), key
    # the data exercise every threshold, so the test can tell them apart
    ladder = [result[precision_key(t)] for t in PRECISION_THRESHOLDS]
    assert 0 < ladder[-1] < ladder[0] < 1 and ladder == sorted(ladder, reverse=True)


def test_empty_target_scores_one_with_empty_prediction_and_zero_otherwise() -> None:
    empty = torch.zeros(4, 4, dtype=torch.bool)
    spill = empty.clone()
    spill[0, 0] = True
    both_empty, only_gt_empty = ReferringSegmentationMetrics(), ReferringSegmentationMetrics()
    both_empty.update([empty], [empty])
    only_gt_empty.update([spill], [empty])
    assert as_floats(both_empty.compute()) == dict.fromkeys(both_empty.compute(), 1.0) | {"ciou": 0.0}
    assert as_floats(only_gt_empty.compute()) == dict.fromkeys(only_gt_empty.compute(), 0.0)


def test_precision_counts_an_iou_of_exactly_the_threshold() -> None:
    """IoU 1/2, 3/5, 7/10, 4/5, 9/10: each sits exactly on one threshold and counts as a hit there."""
    preds, targets = [], []
    for inter, union in [(1, 2), (3, 5), (7, 10), (4, 5), (9, 10)]:
        target = torch.zeros(union, dtype=torch.bool)
        target[:inter] = True
        preds.append(torch.ones(1, union, dtype=torch.bool))
        targets.append(target[None])
    metric = ReferringSegmentationMetrics()
    metric.update(preds, targets)
    result = as_floats(metric.compute())
    ladder = [result[precision_key(t)] for t in PRECISION_THRESHOLDS]
    assert ladder == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2])
    assert result["ciou"] == pytest.approx(24 / 32)


def test_batched_tensor_equals_list_and_ints_count_nonzero_as_foreground() -> None:
    preds, targets = random_masks(5, 12)
    crops = [(p[:5, :5], t[:5, :5]) for p, t in zip(preds, targets, strict=True)]
    as_list, as_tensor = ReferringSegmentationMetrics(), ReferringSegmentationMetrics()
    as_list.update([torch.from_numpy(p) for p, _ in crops], [torch.from_numpy(t) for _, t in crops])
    stacked_p = torch.from_numpy(np.stack([p for p, _ in crops])).to(torch.uint8)
    as_tensor.update(stacked_p, torch.from_numpy(np.stack([t for _, t in crops])))
    assert as_floats(as_tensor.compute()) == as_floats(as_list.compute())


def test_logits_to_masks_thresholds_at_zero() -> None:
    logits = torch.tensor([[[-1.0, 0.0, 1e-6]]])
    assert logits_to_masks(logits).tolist() == [[[False, False, True]]]
    assert [m.tolist() for m in logits_to_masks([logits[0], -logits[0]])] == [
        [[False, False, True]],
        [[True, False, False]],
    ]


def test_reset_and_large_counts_stay_exact() -> None:
    metric = ReferringSegmentationMetrics()
    metric.update([torch.ones(3, 3, dtype=torch.bool)], [torch.ones(3, 3, dtype=torch.bool)])
    metric.reset()
    assert int(metric.count) == 0 and metric.intersection.dtype == torch.int64
    # 4097**2 is odd and above 2**24: a float32 sum would round it, int64 keeps every pixel
    big = torch.ones(1, 4097, 4097, dtype=torch.bool)
    target = big.clone()
    target[0, 0, 0] = False
    metric.update(big, target)
    assert int(metric.union) == 4097**2 and int(metric.intersection) == 4097**2 - 1
    assert float(torch.tensor(4097**2, dtype=torch.float32)) != 4097**2


def test_bad_inputs_are_refused_with_a_reason() -> None:
    metric = ReferringSegmentationMetrics()
    with pytest.raises(ValueError, match="shape"):
        metric.update([torch.zeros(3, 3, dtype=torch.bool)], [torch.zeros(3, 4, dtype=torch.bool)])
    with pytest.raises(TypeError, match="logits_to_masks"):
        metric.update([torch.zeros(3, 3)], [torch.zeros(3, 3, dtype=torch.bool)])
    with pytest.raises(ValueError, match="2 predictions for 1"):
        metric.update(torch.zeros(2, 3, 3, dtype=torch.bool), torch.zeros(1, 3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        metric.update(torch.zeros(3, 3, dtype=torch.bool), torch.zeros(3, 3, dtype=torch.bool))
