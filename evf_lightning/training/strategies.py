"""Distributed strategies fitted to EVF models, so `configs/trainer/*.yaml` only choose switches.

DDP: EVF trains parameters its text path never uses (SAM's IoU head with one mask output, BEiT-3's mask
token). FSDP: the transformer blocks are the units of sharding and of activation checkpointing; Lightning
needs them as Python classes, which a YAML file cannot name.
"""

from __future__ import annotations

from typing import Literal

import torch
from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy
from torch import nn
from torch.distributed.fsdp import FullyShardedDataParallel
from transformers.models.sam.modeling_sam import SamVisionLayer
from transformers.models.sam2.modeling_sam2 import Sam2MultiScaleBlock

from evf_lightning.models.beit3 import EncoderLayer
from evf_lightning.models.efficient_sam import Block as EfficientSamBlock

# The repeated blocks of every image encoder (SAM ViT, SAM-2 Hiera, EfficientSAM ViT) and of BEiT-3.
BLOCK_CLASSES: frozenset[type[nn.Module]] = frozenset(
    {SamVisionLayer, Sam2MultiScaleBlock, EfficientSamBlock, EncoderLayer}
)


class EvfDDPStrategy(DDPStrategy):
    """DDP with a static graph: the unused trainable parameters are found in the first step, once.

    Plain DDP stops at the second step ("parameters that were not used in producing the loss");
    `find_unused_parameters` would find them by walking the autograd graph at every step instead. Frozen
    parameters (requires_grad False) are never in DDP's buckets: they cost no all-reduce.
    """

    def __init__(self, static_graph: bool = True, find_unused_parameters: bool = False) -> None:
        super().__init__(static_graph=static_graph, find_unused_parameters=find_unused_parameters)


class EvfFSDPStrategy(FSDPStrategy):
    """Fully sharded data parallel over the EVF blocks (`BLOCK_CLASSES`), each block its own FSDP unit.

    Args:
        sharding_strategy: FULL_SHARD (ZeRO-3-like), SHARD_GRAD_OP (ZeRO-2-like), NO_SHARD, HYBRID_SHARD.
        state_dict_type: "sharded" writes one shard per rank (a folder; `evf export` consolidates it),
            "full" gathers one file on rank 0.
        activation_checkpointing: recompute each block's activations in the backward pass.
        cpu_offload: keep parameters and gradients in CPU memory between uses.
    """

    def __init__(
        self,
        sharding_strategy: Literal["FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD"] = "FULL_SHARD",
        state_dict_type: Literal["full", "sharded"] = "sharded",
        activation_checkpointing: bool = True,
        cpu_offload: bool = False,
    ) -> None:
        super().__init__(
            sharding_strategy=sharding_strategy,
            state_dict_type=state_dict_type,
            auto_wrap_policy=set(BLOCK_CLASSES),
            activation_checkpointing_policy=set(BLOCK_CLASSES) if activation_checkpointing else None,
            cpu_offload=cpu_offload,
        )


class CpuFSDPStrategy(EvfFSDPStrategy):
    """`EvfFSDPStrategy` on CPU processes over gloo, for tests and CPU-only machines.

    Lightning refuses FSDP without CUDA, and passes FSDP the device index, which a CPU device does not have.
    Wrapping here with `device_id=cpu` first leaves Lightning only its activation checkpointing and metric
    placement to do. Use the sharded state dict: Lightning gathers a full one with `offload_to_cpu=True`,
    which crashes rank 0 on CPU (reference/platform-notes.md).
    """

    def _setup_model(self, model: nn.Module) -> nn.Module:
        wrapped = FullyShardedDataParallel(
            module=model,
            cpu_offload=self.cpu_offload,
            mixed_precision=self.mixed_precision_config,
            sharding_strategy=self.sharding_strategy,
            device_id=torch.device("cpu"),
            **self.kwargs,
        )
        self.kwargs.pop("auto_wrap_policy", None)  # applied above; Lightning would warn that it is ignored
        return super()._setup_model(wrapped)
