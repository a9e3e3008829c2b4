"""Checkpoint writes are atomic: a write that fails half way leaves the previous file whole and no debris."""

from pathlib import Path

import pytest
import torch

from evf_lightning.training.checkpoint_io import AtomicCheckpointIO


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1, "w": torch.ones(1000)}, path)
    with pytest.raises(Exception, match="pickle"):
        # the tensor is serialised first, then pickling the lambda fails: a plain write would leave half a file
        io.save_checkpoint({"w": torch.zeros(1000), "bad": lambda: None}, path)
    assert torch.load(path, weights_only=True)["step"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]
