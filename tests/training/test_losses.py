"""BCE + Dice against an independent NumPy computation of the official formulas."""

import numpy as np
import pytest
import torch

from evf_lightning.training.losses import LossConfig, evf_loss


def numpy_loss(logits: list[np.ndarray], targets: list[np.ndarray], scale=1000.0, eps=1e-6):
    bces, dices = [], []
    for x, y in zip(logits, targets, strict=True):
        for xi, yi in zip(x.astype(np.float64), y.astype(np.float64), strict=True):
            bce = np.maximum(xi, 0) - xi * yi + np.log1p(np.exp(-np.abs(xi)))
            bces.append(bce.mean())
            p = 1 / (1 + np.exp(-xi))
            dices.append(1 - (2 * (p / scale * yi).sum() + eps) / ((p / scale).sum() + (yi / scale).sum() + eps))
    return float(np.mean(bces)), float(np.mean(dices))


def make(seed: int):
    rng = np.random.default_rng(seed)
    logits, targets = [], []
    for n, h, w in [(3, 17, 23), (1, 40, 12), (2, 9, 9)]:
        logits.append((rng.normal(0, 3, size=(n, h, w))).astype(np.float32))
        target = (rng.random((n, h, w)) < 0.3).astype(np.float32)
        target[0] = 0  # an empty target in every image
        targets.append(target)
    return logits, targets


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_numpy_and_averages_over_all_masks(seed):
    logits, targets = make(seed)
    loss = evf_loss([torch.from_numpy(x) for x in logits], [torch.from_numpy(y) for y in targets])
    bce, dice = numpy_loss(logits, targets)
    assert float(loss.bce) == pytest.approx(bce, rel=1e-5)
    assert float(loss.dice) == pytest.approx(dice, rel=1e-5)
    assert float(loss.total) == pytest.approx(bce + dice, rel=1e-5)


def test_weights_scale_the_parts():
    logits, targets = make(2)
    loss = evf_loss([torch.from_numpy(x) for x in logits], [torch.from_numpy(y) for y in targets], LossConfig(2.0, 0.5))
    assert float(loss.total) == pytest.approx(2.0 * float(loss.bce) + 0.5 * float(loss.dice), rel=1e-6)


def test_bf16_autocast_inputs_give_fp32_loss():
    logits, targets = make(3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = evf_loss([torch.from_numpy(x).bfloat16() for x in logits], [torch.from_numpy(y) for y in targets])
    bce, dice = numpy_loss([torch.from_numpy(x).bfloat16().float().numpy() for x in logits], targets)
    assert loss.total.dtype == torch.float32
    assert float(loss.bce) == pytest.approx(bce, rel=1e-5)
    assert float(loss.dice) == pytest.approx(dice, rel=1e-5)


def test_gradient_flows_to_logits():
    logits, targets = make(4)
    leaves = [torch.from_numpy(x).requires_grad_() for x in logits]
    evf_loss(leaves, [torch.from_numpy(y) for y in targets]).total.backward()
    assert all(leaf.grad is not None and leaf.grad.abs().sum() > 0 for leaf in leaves)
