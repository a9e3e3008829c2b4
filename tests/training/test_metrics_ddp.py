"""Two real processes over gloo: the synced metrics equal the single-process metrics on the same data."""

import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from evf_lightning.tracking.server import free_port
from evf_lightning.training.metrics import ReferringSegmentationMetrics


def _masks(count: int = 40):
    rng = np.random.default_rng(3)
    out = []
    for i in range(count):
        h, w = rng.integers(6, 30, size=2)
        target = torch.from_numpy(rng.random((h, w)) < 0.4)
        pred = torch.from_numpy(rng.random((h, w)) < 0.4) | (target if i % 2 else torch.zeros_like(target))
        if i % 9 == 0:
            target, pred = torch.zeros_like(target), torch.zeros_like(pred)
        out.append((pred, target))
    return out


def _rank_worker(rank: int, world: int, port: int, path: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        shard = _masks()[rank::world]  # each rank sees a different, unequal half
        metric = ReferringSegmentationMetrics()
        metric.update([p for p, _ in shard], [t for _, t in shard])
        result = {k: float(v) for k, v in metric.compute().items()}
        if rank == 0:
            torch.save(result, path)
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_agree_with_one(tmp_path):
    path = str(tmp_path / "ddp.pt")
    mp.spawn(_rank_worker, args=(2, free_port(), path), nprocs=2, join=True)
    distributed = torch.load(path)
    single = ReferringSegmentationMetrics()
    masks = _masks()
    single.update([p for p, _ in masks], [t for _, t in masks])
    for key, value in single.compute().items():
        assert distributed[key] == pytest.approx(float(value), abs=1e-7), key
