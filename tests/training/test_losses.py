"""BCE + Dice against an independent float64 NumPy computation of the official formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evf_lightning.training.losses import LossConfig, MaskLoss, evf_loss

SHAPES = [(3, 17, 23), (1, 40, 12), (2, 9, 9), (5, 6, 31)]  # [n_i, H_i, W_i]: counts and sizes differ


def numpy_per_mask(logits: np.ndarray, target: np.ndarray, scale: float, eps: float) -> tuple[float, float]:
    """One mask's BCE (pixel mean) and Dice, written from the formulas, in float64."""
    x, y = logits.astype(np.float64).ravel(), target.astype(np.float64).ravel()
    bce = np.mean(np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x))))
    p = 1.0 / (1.0 + np.exp(-x))
    dice = 1 - (2 * np.sum(p / scale * y) + eps) / (np.sum(p / scale) + np.sum(y / scale) + eps)
    return float(bce), float(dice)


def numpy_loss(logits, targets, scale: float = 1000.0, eps: float = 1e-6) -> tuple[float, float]:
    """Mean over every mask of every image: not a mean of per-image means."""
    parts = [
        numpy_per_mask(x, y, scale, eps)
        for xs, ys in zip(logits, targets, strict=True)
        for x, y in zip(xs, ys, strict=True)
    ]
    return float(np.mean([b for b, _ in parts])), float(np.mean([d for _, d in parts]))


def make(seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    logits, targets = [], []
    for n, h, w in SHAPES:
        logits.append(rng.normal(0, 4, size=(n, h, w)).astype(np.float32))
        target = rng.random((n, h, w)) < rng.uniform(0.1, 0.7)
        target[0] = False  # every image has an empty target
        targets.append(target)
    logits[2][0] = -20.0  # a confident empty prediction on an empty target: Dice near 0, not 1
    return logits, targets


def to_torch(arrays: list[np.ndarray]) -> list[torch.Tensor]:
    return [torch.from_numpy(a) for a in arrays]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_numpy_over_all_masks_of_different_sizes(seed: int) -> None:
    logits, targets = make(seed)
    loss = evf_loss(to_torch(logits), to_torch(targets))
    bce, dice = numpy_loss(logits, targets)
    assert isinstance(loss, MaskLoss)
    assert loss.total.dtype == loss.bce.dtype == loss.dice.dtype == torch.float32
    assert float(loss.bce) == pytest.approx(bce, rel=1e-6)
    assert float(loss.dice) == pytest.approx(dice, rel=1e-6)
    assert float(loss.total) == pytest.approx(bce + dice, rel=1e-6)
    # the test can tell a mean over masks from a mean of per-image means
    per_image = np.mean([numpy_loss([x], [y])[0] for x, y in zip(logits, targets, strict=True)])
    assert abs(per_image - bce) > 1e-3


def test_empty_targets_follow_the_scaled_eps() -> None:
    """With an empty target, Dice = 1 - eps / (sum(p)/scale + eps): scale and eps decide the value."""
    quiet = torch.full((1, 10, 10), -20.0)  # p ~ 2e-9 per pixel: sum(p)/1000 is far below eps
    loud = torch.full((1, 10, 10), 20.0)  # p ~ 1 per pixel: sum(p)/1000 = 0.1, far above eps
    empty = torch.zeros(1, 10, 10)
    expected_quiet = numpy_per_mask(quiet.numpy(), empty.numpy(), 1000.0, 1e-6)[1]
    assert 1e-4 < expected_quiet < 1e-3
    # 1 - 0.9998 in fp32 carries an absolute error of ~1e-7, as in the official code
    assert float(evf_loss([quiet], [empty]).dice) == pytest.approx(expected_quiet, abs=2e-7)
    assert float(evf_loss([loud], [empty]).dice) == pytest.approx(1 - 1e-6 / (0.1 + 1e-6), rel=1e-6)


def test_config_scale_eps_and_weights_are_used() -> None:
    logits, targets = make(3)
    config = LossConfig(bce_weight=2.0, dice_weight=0.5, dice_scale=10.0, dice_eps=1e-3)
    loss = evf_loss(to_torch(logits), to_torch(targets), config)
    bce, dice = numpy_loss(logits, targets, scale=10.0, eps=1e-3)
    assert float(loss.dice) == pytest.approx(dice, rel=1e-6)
    assert float(loss.total) == pytest.approx(2.0 * bce + 0.5 * dice, rel=1e-6)


def test_bf16_under_autocast_still_gives_an_fp32_accurate_loss() -> None:
    """Logits born in bf16 inside autocast: the loss is the fp32/float64 value on those bf16 numbers."""
    logits, targets = make(4)
    head = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.ones_(head.weight)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = [head(torch.from_numpy(x)[..., None])[..., 0] for x in logits]
        assert all(x.dtype == torch.bfloat16 for x in bf16)
        loss = evf_loss(bf16, to_torch(targets))
    bce, dice = numpy_loss([x.detach().float().numpy() for x in bf16], targets)
    assert loss.total.dtype == torch.float32
    assert loss.bce.item() == pytest.approx(bce, rel=1e-6)
    assert loss.dice.item() == pytest.approx(dice, rel=1e-6)
    loss.total.backward()
    assert head.weight.grad is not None and torch.isfinite(head.weight.grad).all()


def test_gradients_flow_and_a_batch_without_masks_is_a_connected_zero() -> None:
    logits, targets = make(5)
    leaves = [torch.from_numpy(x).requires_grad_() for x in logits]
    evf_loss(leaves, to_torch(targets)).total.backward()
    assert all(leaf.grad is not None and leaf.grad.abs().sum() > 0 for leaf in leaves)

    nothing = torch.zeros(0, 8, 8, requires_grad=True)
    loss = evf_loss([nothing], [torch.zeros(0, 8, 8)])
    assert loss.total.item() == 0.0 and loss.total.requires_grad
    loss.total.backward()
    # an image with no expression next to one with expressions changes nothing
    x, y = torch.from_numpy(logits[0]), torch.from_numpy(targets[0])
    mixed = evf_loss([torch.zeros(0, 5, 5), x], [torch.zeros(0, 5, 5), y])
    alone = evf_loss([x], [y])
    assert float(mixed.total) == pytest.approx(float(alone.total), rel=1e-7)


def test_mismatched_shapes_name_the_image() -> None:
    with pytest.raises(ValueError, match="image 1"):
        evf_loss([torch.zeros(1, 4, 4), torch.zeros(2, 4, 4)], [torch.zeros(1, 4, 4), torch.zeros(2, 4, 5)])
    with pytest.raises(ValueError, match="one target per"):
        evf_loss([torch.zeros(1, 4, 4)], [])
