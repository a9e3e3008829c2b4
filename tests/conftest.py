"""Shared fixtures: a small generated dataset in the real refer format, written once per session."""

from pathlib import Path

import pytest

from evf_lightning.data.synthetic import write_synthetic_dataset


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
