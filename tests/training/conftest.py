"""Fixtures of the training tests: the experiment file of a short `evf fit` of the tiny model on generated data."""

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
STEPS = 500


def write_experiment(path: Path, synth_root: Path, name: str, steps: int = STEPS) -> Path:
    experiment = {
        "seed_everything": 0,
        "model": {
            "model": str(REPO / "configs/model/evf_tiny.yaml"),
            "optimizer": {"lr": 2.0e-3, "warmup_steps": 50},
            # from scratch: the random image encoder must train too (the paper freezes a pretrained one)
            "trainable": {"image_encoder": True},
        },
        "data": {
            "root": str(synth_root),
            "tokenizer": str(synth_root / "tokenizer"),
            "train": [{"dataset": "refcoco", "split_by": "unc", "split": "train"}],
            "val": [{"dataset": "refcoco", "split_by": "unc", "split": "val"}],
            "batch_size": 16,
            "eval_batch_size": 16,
            "num_workers": 0,
        },
        "trainer": {
            "accelerator": "cpu",
            "max_steps": steps,
            "val_check_interval": steps // 2,
            "check_val_every_n_epoch": None,
            "log_every_n_steps": 10,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "default_root_dir": str(path.parent / "runs"),
            "logger": {
                "class_path": "evf_lightning.tracking.logger.EvfMLFlowLogger",
                "init_args": {"experiment_name": name},
            },
        },
    }
    path.write_text(yaml.safe_dump(experiment))
    return path


@pytest.fixture(scope="session")
def experiment_file() -> Callable[..., Path]:
    """`write_experiment(path, synth_root, name, steps=STEPS)`: the tiny model trained from scratch, CPU, MLflow."""
    return write_experiment


def start_evf_fit(folder: Path, config: Path, *args: str, wait: bool = True) -> subprocess.Popen:
    """`evf fit --config CONFIG ARGS` as its own process in `folder` (MLflow store `folder/mlflow.db`).

    With `wait`, returns once it has finished and fails the test unless it succeeded.
    """
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "evf_lightning.cli", "fit", "--config", str(config), *args]
    process = subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if wait:
        finish(process)
    return process


def finish(process: subprocess.Popen) -> None:
    _, stderr = process.communicate(timeout=900)
    assert process.returncode == 0, stderr.decode()[-3000:]


@pytest.fixture(scope="session")
def evf_fit() -> Callable[..., subprocess.Popen]:
    """`evf_fit(folder, config, *args, wait=True)`: see `start_evf_fit`."""
    return start_evf_fit


@pytest.fixture(scope="session")
def finished() -> Callable[[subprocess.Popen], None]:
    """`finished(process)`: wait for an `evf_fit(..., wait=False)` process and fail the test unless it succeeded."""
    return finish
