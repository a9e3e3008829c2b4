"""Cluster launchers for a grid: a SLURM job array (one task per cell) or one torchrun command per cell.

Each launched process runs `evf sweep GRID --cell i`, so a cluster run checks, skips and tags cells
exactly as a local sweep does, and all of them log to the one tracking server in MLFLOW_TRACKING_URI.
"""

from __future__ import annotations

import json
import shlex
import sys
from typing import Any

from evf_lightning.commands.grid import Grid

# The interpreter of this environment: on a cluster the same shared-filesystem path runs on every node.
PYTHON = shlex.quote(sys.executable)


def sweep_args(grid: Grid, overrides: dict[str, Any], nodes: int, devices: int) -> str:
    """`sweep GRID ... --cell` (the index follows); the scheduler's layout becomes the trainer's."""
    shared = {**overrides, "trainer.num_nodes": nodes, "trainer.devices": devices}
    return f"sweep {shlex.quote(str(grid.path))} --overrides {shlex.quote(json.dumps(shared))} --cell"


def slurm_array(grid: Grid, overrides: dict[str, Any], tracking_uri: str, nodes: int, devices: int) -> str:
    """An sbatch script: array task i runs cell i on `nodes` nodes with `devices` tasks (GPUs) per node."""
    command = f"{PYTHON} -m evf_lightning.cli {sweep_args(grid, overrides, nodes, devices)}"
    return "\n".join(
        [
            "#!/bin/bash",
            f"# Sweep {grid.name} ({grid.path}): {len(grid.cells)} cells, one array task each.",
            "# Submit with sbatch; finished cells are skipped, so resubmitting finishes only the missing ones.",
            f"#SBATCH --job-name={grid.name}",
            f"#SBATCH --array=0-{len(grid.cells) - 1}",
            f"#SBATCH --nodes={nodes}",
            f"#SBATCH --ntasks-per-node={devices}",
            f"#SBATCH --gpus-per-node={devices}",
            "#SBATCH --output=slurm-%A_%a.out",
            "set -euo pipefail",
            f'export MLFLOW_TRACKING_URI="${{MLFLOW_TRACKING_URI:-{tracking_uri}}}"',
            f'srun {command} "$SLURM_ARRAY_TASK_ID"',
            "",
        ]
    )


def torchrun_commands(grid: Grid, overrides: dict[str, Any], tracking_uri: str, nodes: int, devices: int) -> str:
    """One torchrun line per cell; with several nodes, run each line on every node (same MASTER_ADDR)."""
    command = f"-m evf_lightning.cli {sweep_args(grid, overrides, nodes, devices)}"
    rendezvous = " --rdzv_backend=c10d --rdzv_endpoint=$MASTER_ADDR:29500" if nodes > 1 else ""
    launcher = f"{PYTHON} -m torch.distributed.run --nnodes={nodes} --nproc_per_node={devices}"
    lines = [
        f"# Sweep {grid.name} ({grid.path}): {len(grid.cells)} cells, one torchrun each.",
        f'export MLFLOW_TRACKING_URI="${{MLFLOW_TRACKING_URI:-{tracking_uri}}}"',
    ]
    lines += [f"{launcher}{rendezvous} {command} {cell.index}  # {cell.key}" for cell in grid.cells]
    return "\n".join([*lines, ""])
