"""Two DDP processes (gloo) with batch 4 each compute what one process with batch 8 computes: same validation metrics
after the same training steps, with the paper's frozen image encoder, which DDP leaves out of its all-reduce."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[2]
STEPS = 3
# One expression per image: every rank's loss is a mean over the same number of masks, so the mean of the ranks'
# gradients is the gradient of the global batch. Dice only: after a few steps BCE alone predicts background
# everywhere, and metrics of empty predictions (all 0) would compare nothing.
COMMON = [
    "--trainer.max_steps", str(STEPS), "--trainer.val_check_interval", str(STEPS), "--trainer.num_sanity_val_steps",
    "0", "--data.expressions_per_image", "1", "--model.trainable.image_encoder", "false",
    "--model.optimizer.warmup_steps", "1", "--model.loss.bce_weight", "0.0",
]  # fmt: skip


def last_checkpoint(folder: Path) -> Path:
    (last,) = (folder / "runs").glob("*/*/checkpoints/last.ckpt")
    return last


def validation_metrics(folder: Path, name: str) -> dict[str, float]:
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    return {key: value for key, value in run.data.metrics.items() if key.startswith("val/")}


def test_two_processes_of_batch_four_validate_like_one_of_batch_eight(tmp_path, synth_root, experiment_file, evf_fit):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    single.mkdir(), ddp.mkdir()
    evf_fit(
        single, experiment_file(single / "e.yaml", synth_root, "single"), *COMMON,
        "--trainer", str(REPO / "configs/trainer/cpu.yaml"), "--data.batch_size", "8",
    )  # fmt: skip
    evf_fit(
        ddp, experiment_file(ddp / "e.yaml", synth_root, "ddp"), *COMMON,
        "--trainer", str(REPO / "configs/trainer/ddp_cpu.yaml"), "--data.batch_size", "4",
    )  # fmt: skip
    one, two = validation_metrics(single, "single"), validation_metrics(ddp, "ddp")
    assert {"val/ciou", "val/giou", "val/precision_0.5"} <= one.keys() == two.keys()
    assert 0.0 < one["val/ciou"] < 1.0
    for key, value in one.items():
        if key.endswith("/loss"):  # a mean of the ranks' means (their val shares hold unequal expression counts)
            continue
        # the same sums, added in another order across two processes: equal to float rounding
        assert two[key] == pytest.approx(value, abs=1e-4), key

    weights = [torch.load(f, weights_only=True)["state_dict"] for f in (last_checkpoint(single), last_checkpoint(ddp))]
    for key, value in weights[0].items():  # AdamW moves each weight by about lr = 2e-3 a step
        assert torch.allclose(weights[1][key], value, atol=1e-4, rtol=0), key
