"""A run killed hard (SIGKILL) mid-epoch and resumed from last.ckpt is the uninterrupted run: same weights, and one
MLflow run holding every step once with the same losses."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from evf_lightning.data.mixture import MixtureSampler
from evf_lightning.data.resumable_loader import ResumableLoader
from evf_lightning.data.sampler import Draw, EpochDrawSampler

BATCHES_PER_EPOCH = 12  # 96 generated train images, batch 8
STEPS = 20  # crosses an epoch boundary; validation and last.ckpt every 4 steps, the last at step 20
OVERRIDES = [
    "--trainer.max_steps", str(STEPS), "--trainer.val_check_interval", "4", "--trainer.limit_val_batches", "1",
    "--trainer.log_every_n_steps", "1", "--trainer.deterministic", "true", "--data.batch_size", "8",
]  # fmt: skip


def the_run(folder: Path, name: str):
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    return client, run


def last_checkpoint(folder: Path) -> Path | None:
    return next((folder / "runs").glob("*/*/checkpoints/last.ckpt"), None)


def losses_by_step(client: MlflowClient, run_id: str) -> dict[int, float]:
    """train/loss per step; where a step was logged twice (by the killed run, then again after resuming), the later."""
    history = sorted(client.get_metric_history(run_id, "train/loss"), key=lambda m: m.timestamp)
    return {m.step: m.value for m in history}


def model_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]


def test_killed_mid_epoch_and_resumed_equals_uninterrupted(tmp_path, synth_root, experiment_file, evf_fit, finished):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    whole.mkdir(), killed.mkdir()
    config_whole = experiment_file(whole / "experiment.yaml", synth_root, "whole")
    config_killed = experiment_file(killed / "experiment.yaml", synth_root, "killed")
    uninterrupted = evf_fit(whole, config_whole, *OVERRIDES, wait=False)
    victim = evf_fit(killed, config_killed, *OVERRIDES, wait=False)
    deadline = time.monotonic() + 240
    while last_checkpoint(killed) is None and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    finished(uninterrupted)

    checkpoint = last_checkpoint(killed)
    saved_step = torch.load(checkpoint, map_location="cpu", weights_only=True)["global_step"]
    assert 0 < saved_step < STEPS and saved_step % BATCHES_PER_EPOCH != 0  # really mid-epoch
    evf_fit(killed, config_killed, *OVERRIDES, "--ckpt_path", str(checkpoint))

    whole_weights, resumed_weights = model_weights(last_checkpoint(whole)), model_weights(last_checkpoint(killed))
    assert whole_weights.keys() == resumed_weights.keys()
    for key, value in whole_weights.items():
        assert torch.equal(value, resumed_weights[key]), key

    client, run = the_run(killed, "killed")  # one run: the resume continued it
    whole_client, whole_run = the_run(whole, "whole")
    resumed_losses, whole_losses = (
        losses_by_step(client, run.info.run_id),
        losses_by_step(whole_client, whole_run.info.run_id),
    )
    assert sorted(resumed_losses) == list(range(STEPS))  # every step, none missing
    assert resumed_losses == whole_losses
    assert run.info.status == "FINISHED"


def test_resumable_loader_needs_a_resumable_sampler():
    with pytest.raises(TypeError, match="resumable position"):
        ResumableLoader(range(4), sampler=range(4))


class DrawIndex(torch.utils.data.Dataset):
    """30 items; an item is the index it was drawn at."""

    def __len__(self) -> int:
        return 30

    def __getitem__(self, draw: Draw) -> int:
        return draw.index


SAMPLERS = {
    "shuffle": lambda: EpochDrawSampler(range(30), seed=3),
    "mixture": lambda: MixtureSampler([10, 20], [1.0, 2.0], samples_per_epoch=30, seed=3),
}


@pytest.mark.parametrize("make_sampler", SAMPLERS.values(), ids=SAMPLERS.keys())
def test_loader_state_resumes_at_the_next_batch_of_the_same_epoch(make_sampler):
    first = ResumableLoader(DrawIndex(), batch_size=4, sampler=make_sampler())
    first.sampler.set_epoch(2)
    batches = iter(first)
    [next(batches) for _ in range(3)]
    state = first.state_dict()
    rest = [b.tolist() for b in batches]

    resumed = ResumableLoader(DrawIndex(), batch_size=4, sampler=make_sampler())
    resumed.load_state_dict(state)
    assert state["batches"] == 3 and [b.tolist() for b in resumed] == rest
    resumed.sampler.set_epoch(2)
    assert len(list(resumed)) == len(resumed) == 8  # later iterations are whole epochs again

    resumed.load_state_dict({**state, "batches": len(resumed)})  # saved at the epoch's end: the next one
    assert resumed.sampler.epoch == 3 and len(list(resumed)) == 8
