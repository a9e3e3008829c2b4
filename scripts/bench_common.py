"""What the speed benchmarks share: the real-size model, peak memory, and the JSON + markdown report."""

from __future__ import annotations

import json
import resource
from pathlib import Path
from typing import Any

import torch

from evf_lightning.models.beit3 import Beit3Config
from evf_lightning.models.evf import EvfModelConfig
from evf_lightning.models.prompt_encoder import Beit3PromptConfig
from evf_lightning.models.sam import SamBackboneConfig


def real_size_config(attn_implementation: str = "sdpa") -> EvfModelConfig:
    """SAM ViT-B at 1024 px + BEiT-3-B at 224 px: the smallest published-size EVF with a SAM encoder."""
    backbone = SamBackboneConfig(attn_implementation=attn_implementation)
    return EvfModelConfig(backbone, Beit3PromptConfig(Beit3Config.base()))


def peak_memory_mb(device: str) -> float:
    """Peak accelerator memory allocated by torch, or on a CPU the process's peak resident set."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


def write_report(stem: Path, results: dict[str, Any], header: list[str], rows: list[list[str]]) -> str:
    """Write `stem`.json and `stem`.md (a markdown table); returns the table for printing."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    table = "\n".join(lines)
    stem.with_suffix(".md").write_text(table + "\n")
    return table
