"""Metrics against an independent NumPy computation of the official eval (reference/evf-sam-recipe.md §4)."""

import numpy as np
import pytest
import torch

from evf_lightning.training.metrics import PRECISION_THRESHOLDS, ReferringSegmentationMetrics


def numpy_reference(preds: list[np.ndarray], targets: list[np.ndarray]) -> dict[str, float]:
    inters = np.array([np.logical_and(p, t).sum() for p, t in zip(preds, targets, strict=True)], dtype=np.float64)
    unions = np.array([np.logical_or(p, t).sum() for p, t in zip(preds, targets, strict=True)], dtype=np.float64)
    ious = np.where(unions == 0, 1.0, inters / (unions + 1e-10))
    out = {"ciou": inters.sum() / unions.sum(), "giou": ious.mean()}
    for t in PRECISION_THRESHOLDS:
        out[f"precision_{t}"] = float((ious >= t).mean())
    return out


def random_masks(seed: int, count: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    preds, targets = [], []
    for i in range(count):
        h, w = rng.integers(5, 40, size=2)
        target = rng.random((h, w)) < rng.uniform(0.05, 0.6)
        # predictions overlap their targets to varying degrees, so every threshold is crossed
        pred = np.where(rng.random((h, w)) < rng.uniform(0.0, 1.0), target, rng.random((h, w)) < 0.3)
        if i % 7 == 0:
            target[:] = False
            pred[:] = False  # empty target, empty prediction: IoU 1
        elif i % 7 == 1:
            target[:] = False  # empty target, non-empty prediction: IoU 0
            pred[0, 0] = True
        preds.append(pred)
        targets.append(target)
    return preds, targets


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_numpy_reference_with_empty_masks_and_mixed_sizes(seed):
    preds, targets = random_masks(seed, 60)
    metric = ReferringSegmentationMetrics()
    for start in range(0, 60, 13):  # several updates of lists with different image sizes
        metric.update(
            [torch.from_numpy(p) for p in preds[start : start + 13]],
            [torch.from_numpy(t) for t in targets[start : start + 13]],
        )
    result = {k: float(v) for k, v in metric.compute().items()}
    expected = numpy_reference(preds, targets)
    assert result.keys() == expected.keys()
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-6), key
    assert 0 < result["precision_0.9"] < result["precision_0.5"] < 1


def test_empty_target_and_prediction_scores_one_and_nonempty_prediction_zero():
    metric = ReferringSegmentationMetrics()
    empty = torch.zeros(4, 4, dtype=torch.bool)
    spill = empty.clone()
    spill[0, 0] = True
    metric.update([empty, spill], [empty, empty])
    result = metric.compute()
    assert float(result["giou"]) == pytest.approx(0.5)
    assert float(result["ciou"]) == 0.0
    assert float(result["precision_0.5"]) == pytest.approx(0.5)


def test_batched_tensor_input_equals_list_input():
    preds, targets = random_masks(5, 8)
    same = [(p[:5, :5], t[:5, :5]) for p, t in zip(preds, targets, strict=True) if min(p.shape) >= 5]
    as_list, as_tensor = ReferringSegmentationMetrics(), ReferringSegmentationMetrics()
    as_list.update([torch.from_numpy(p) for p, _ in same], [torch.from_numpy(t) for _, t in same])
    as_tensor.update(torch.from_numpy(np.stack([p for p, _ in same])), torch.from_numpy(np.stack([t for _, t in same])))
    for key, value in as_list.compute().items():
        assert float(as_tensor.compute()[key]) == pytest.approx(float(value))


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        ReferringSegmentationMetrics().update(
            [torch.zeros(3, 3, dtype=torch.bool)], [torch.zeros(3, 4, dtype=torch.bool)]
        )
