"""Two real processes over gloo: the synced metrics equal the single-process metrics on all the data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from evf_lightning.training.metrics import ReferringSegmentationMetrics

COUNT = 41  # odd, so the two ranks get unequal shares


def _masks() -> list[tuple[torch.Tensor, torch.Tensor]]:
    rng = np.random.default_rng(3)
    out = []
    for i in range(COUNT):
        h, w = (int(v) for v in rng.integers(6, 30, size=2))
        target = torch.from_numpy(rng.random((h, w)) < 0.4)
        noise = torch.from_numpy(rng.random((h, w)) < 0.3)
        pred = torch.where(torch.from_numpy(rng.random((h, w)) < rng.uniform(0.4, 1.0)), target, noise)
        if i % 9 == 0:
            target, pred = torch.zeros_like(target), torch.zeros_like(pred)  # IoU 1 by convention
        elif i % 9 == 1:
            target = torch.zeros_like(target)  # IoU 0
        out.append((pred, target))
    return out


def _states(metric: ReferringSegmentationMetrics) -> dict[str, list[float]]:
    names = ("intersection", "union", "iou_sum", "count", "hits")
    return {name: getattr(metric, name).flatten().tolist() for name in names}


def _rank_worker(rank: int, world: int, store: str, out_dir: str) -> None:
    torch.set_num_threads(1)  # as DataLoader workers do: a forked child must not reuse the parent's pool
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        masks = _masks()
        shard = masks[: COUNT // 2 + 1] if rank == 0 else masks[COUNT // 2 + 1 :]
        metric = ReferringSegmentationMetrics()
        for start in range(0, len(shard), 5 + 3 * rank):  # different update sizes on each rank
            chunk = shard[start : start + 5 + 3 * rank]
            metric.update([p for p, _ in chunk], [t for _, t in chunk])
        result = {key: float(value) for key, value in metric.compute().items()}
        with metric.sync_context():
            synced = _states(metric)
        record = {"result": result, "synced": synced, "local_count": int(metric.count)}
        torch.save(record, f"{out_dir}/{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_agree_with_one(tmp_path: Path) -> None:
    # fork where the platform has it: the children start with torch and torchmetrics already imported
    # (about 1 s instead of 13 s of spawn on two cores). The processes and the gloo traffic are real.
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    args = (2, str(tmp_path / "store"), str(tmp_path))
    mp.start_processes(_rank_worker, args=args, nprocs=2, join=True, start_method=method)
    ranks = [torch.load(tmp_path / f"{rank}.pt") for rank in range(2)]

    single = ReferringSegmentationMetrics()
    masks = _masks()
    single.update([p for p, _ in masks], [t for _, t in masks])
    expected, expected_states = single.compute(), _states(single)

    assert [r["local_count"] for r in ranks] == [COUNT // 2 + 1, COUNT // 2]  # each rank saw only its share
    for rank in ranks:
        # integer sums are exact; the float64 IoU sum differs at most in its last bits (another order)
        for name in ("intersection", "union", "count", "hits"):
            assert rank["synced"][name] == expected_states[name], name
        assert rank["synced"]["iou_sum"] == pytest.approx(expected_states["iou_sum"], rel=1e-12)
        for key, value in expected.items():
            assert rank["result"][key] == pytest.approx(float(value), abs=1e-7), key
