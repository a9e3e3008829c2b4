"""Sharded checkpoints (FSDP, DeepSpeed ZeRO) into one Lightning checkpoint file.

A sharded checkpoint is a folder: FSDP writes torch.distributed.checkpoint shards plus `meta.pt` (the
non-tensor state), DeepSpeed writes `latest` and a `global_step*` folder of ZeRO partitions. Consolidated,
it is an ordinary `.ckpt` (`state_dict` with the LightningModule's key names, hyper-parameters, loop
state) that `evf export`, `evf validate --ckpt_path` and a resume at any world size read.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from evf_lightning.training.checkpoint_io import atomic_torch_save

FSDP_META = "meta.pt"
DEEPSPEED_LATEST = "latest"


def checkpoint_kind(path: Path) -> str:
    """ "file", "fsdp" or "deepspeed"; a clear error for anything else."""
    if path.is_file():
        return "file"
    if (path / FSDP_META).is_file():
        return "fsdp"
    if (path / DEEPSPEED_LATEST).is_file():
        return "deepspeed"
    raise FileNotFoundError(
        f"{path} is not a checkpoint: neither a file, nor a sharded FSDP folder ({FSDP_META}), "
        f"nor a DeepSpeed folder ({DEEPSPEED_LATEST})"
    )


def load_consolidated(path: str | Path) -> dict[str, Any]:
    """The whole checkpoint in CPU memory, whatever way it was written (see the module docstring).

    Files and FSDP folders load as tensors and plain data only. DeepSpeed's own files are pickles that
    `weights_only` refuses, so a DeepSpeed folder is read through DeepSpeed's `zero_to_fp32` (needs
    `deepspeed` installed): consolidate only checkpoints you wrote yourself.
    """
    path = Path(path)
    kind = checkpoint_kind(path)
    if kind == "file":
        return torch.load(path, map_location="cpu", weights_only=True)
    if kind == "fsdp":
        from lightning.fabric.utilities.load import _load_distributed_checkpoint
        from lightning.pytorch.utilities.consolidate_checkpoint import _format_checkpoint

        return _format_checkpoint(_load_distributed_checkpoint(path))
    from lightning.pytorch.utilities.deepspeed import convert_zero_checkpoint_to_fp32_state_dict

    with tempfile.TemporaryDirectory() as folder:
        checkpoint = convert_zero_checkpoint_to_fp32_state_dict(path, Path(folder) / "consolidated.ckpt")
    return checkpoint


def consolidate(path: str | Path, out: str | Path) -> Path:
    """Write the checkpoint at `path` (file or sharded folder) as one `.ckpt` file `out`, atomically."""
    atomic_torch_save(load_consolidated(path), out)
    return Path(out)
