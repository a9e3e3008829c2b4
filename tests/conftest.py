"""Shared fixtures: a small generated dataset in the real refer format, and a short real `evf fit` on it."""

from pathlib import Path

import pytest
import torch

from evf_lightning.data.synthetic import write_synthetic_dataset

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    write_synthetic_dataset(root, datasets=["refcoco"], train_images=96, val_images=24, test_images=8, seed=0)
    return root


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing may reach a hub: tests load everything from local folders."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def fit_args(synth_root: Path, *more: str) -> list[str]:
    """`evf fit` arguments of the quickstart experiment on the session's generated data."""
    return [
        "--config",
        str(REPO / "configs/experiments/quickstart.yaml"),
        "--data.root",
        str(synth_root),
        "--data.tokenizer",
        str(synth_root / "tokenizer"),
        "--data.num_workers",
        "0",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        *more,
    ]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, synth_root: Path) -> dict:
    """A real 30-step `evf fit` of the quickstart model, validated once, tracked in its own SQLite MLflow store.

    Keys: args (its `evf fit` arguments, but the step limits), folder (where it ran), tracking_uri, ckpt
    (last.ckpt), state (model weights, our names), run_config (the config.yaml it wrote), run_id (its MLflow run).
    """
    from evf_lightning.cli import main
    from evf_lightning.training.resume import checkpoint_mlflow_run_id

    folder = tmp_path_factory.mktemp("fit")
    tracking_uri = f"sqlite:///{folder / 'mlflow.db'}"
    steps = ["--trainer.max_steps", "30", "--trainer.val_check_interval", "30", "--trainer.limit_val_batches", "1"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
        patch.chdir(folder)
        main(["fit", *fit_args(synth_root, *steps)])
    args = fit_args(synth_root)
    (ckpt,) = folder.glob("runs/*/*/checkpoints/last.ckpt")
    checkpoint = torch.load(ckpt, weights_only=True)
    state = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items()}
    return {
        "args": args,
        "folder": folder,
        "tracking_uri": tracking_uri,
        "ckpt": ckpt,
        "state": state,
        "run_config": ckpt.parent.parent / "config.yaml",
        "run_id": checkpoint_mlflow_run_id(ckpt),
    }
