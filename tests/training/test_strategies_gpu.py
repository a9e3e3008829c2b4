"""On a CUDA device: DeepSpeed ZeRO-2, ZeRO-3 and FSDP each train the tiny model a few steps, and the consolidated
checkpoint validates exactly like the live (still sharded) model. Skipped cleanly without CUDA or DeepSpeed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from lightning import Trainer

from evf_lightning.hub.consolidate import consolidate
from evf_lightning.training.lightning_cli import EvfCLI

REPO = Path(__file__).resolve().parents[2]
STEPS = 4

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
needs_deepspeed = pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="needs deepspeed")


@pytest.mark.parametrize(
    "trainer_file",
    [
        pytest.param("deepspeed_zero2.yaml", marks=needs_deepspeed),
        pytest.param("deepspeed_zero3.yaml", marks=needs_deepspeed),
        "fsdp.yaml",
    ],
)
def test_consolidated_checkpoint_validates_like_the_live_model(
    trainer_file, tmp_path, synth_root, experiment_file, monkeypatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    config = experiment_file(tmp_path / "experiment.yaml", synth_root, trainer_file, steps=STEPS)
    cli = EvfCLI(
        args=[
            "--config", str(config), "--trainer", str(REPO / "configs/trainer" / trainer_file),
            "--trainer.devices", "1", "--trainer.val_check_interval", str(STEPS), "--trainer.limit_val_batches", "2",
        ],
        run=False,
    )  # fmt: skip
    cli.trainer.fit(cli.model, cli.datamodule)
    assert cli.trainer.global_step == STEPS
    live = cli.trainer.validate(cli.model, cli.datamodule)[0]

    (last,) = (tmp_path / "runs").glob("*/*/checkpoints/last.ckpt")
    single = consolidate(last, tmp_path / "consolidated.ckpt")
    plain = Trainer(
        accelerator="gpu", devices=1, precision="bf16-mixed", logger=False, limit_val_batches=2,
        default_root_dir=tmp_path, enable_progress_bar=False,
    )  # fmt: skip
    fresh = EvfCLI(args=["--config", str(config)], run=False).model
    restored = plain.validate(fresh, cli.datamodule, ckpt_path=str(single))[0]
    assert restored.keys() == live.keys()
    for key, value in live.items():
        assert restored[key] == pytest.approx(value, abs=1e-3), key
