"""What the speed benchmarks share: the real-size model, peak memory, and the JSON + markdown report."""

from __future__ import annotations

import json
import resource
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from evf_lightning.models.beit3 import Beit3Config
from evf_lightning.models.evf import EvfModelConfig
from evf_lightning.models.prompt_encoder import Beit3PromptConfig
from evf_lightning.models.sam import SamBackboneConfig

# --sam choices: the three SAM ViT sizes, by the names segment-anything gives them.
SAM_SIZES = {"vit_b": SamBackboneConfig.vit_b, "vit_l": SamBackboneConfig.vit_l, "vit_h": SamBackboneConfig.vit_h}


def real_size_config(attn_implementation: str = "sdpa", sam: str = "vit_b") -> EvfModelConfig:
    """SAM at 1024 px + BEiT-3-B at 224 px. ViT-B is the smallest published-size EVF with a SAM encoder; ViT-H
    with BEiT-3-B is the paper's Table 5 ablation size, and ViT-H is the SAM of the released EVF-SAM."""
    backbone = replace(SAM_SIZES[sam](), attn_implementation=attn_implementation)
    return EvfModelConfig(backbone, Beit3PromptConfig(Beit3Config.base()))


def describe(sam: str) -> str:
    """The model's name in reports, e.g. 'SAM ViT-H 1024 + BEiT-3-B 224'."""
    return f"SAM ViT-{sam[-1].upper()} 1024 + BEiT-3-B 224"


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
