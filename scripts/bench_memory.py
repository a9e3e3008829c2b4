"""Peak memory per rank of full-size EVF-SAM training under each strategy: an estimate from the meta device.

The model is built on the meta device (no memory, no weights), its parameters counted by what the recipe
trains (the SAM image encoder frozen), and the bytes of weights, gradients and AdamW state each rank holds are
added up by the rules of each strategy. Activations, buffers, temporary all-gather buffers and the CUDA context
are NOT included: this is a lower bound on model state, an estimate, not a measurement. On a machine with a CUDA
device, `--measure` also trains one step in one process (the DDP row at world size 1) and prints the peak.

    python scripts/bench_memory.py [--model configs/model/evf_sam.yaml] [--world 1 4 8 32] [--measure]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch
from jsonargparse import ArgumentParser

from evf_lightning.models.evf import EvfModel, EvfModelConfig
from evf_lightning.training.trainable import TrainableParts, apply_trainable

GIB = 2**30
ADAM_STATE = 8  # exp_avg and exp_avg_sq in fp32


@dataclass(frozen=True)
class Counts:
    total: int
    trainable: int


@dataclass(frozen=True)
class Strategy:
    """Bytes per parameter a rank holds: weights (all), gradients and optimizer state (trainable only).

    `sharded_*` say whether that part is divided by the world size.
    """

    name: str
    weight_bytes: float
    grad_bytes: float
    optim_bytes: float
    sharded_weights: bool
    sharded_grads: bool
    sharded_optim: bool

    def per_rank(self, counts: Counts, world: int) -> tuple[float, float, float]:
        def share(sharded: bool) -> int:
            return world if sharded else 1

        return (
            counts.total * self.weight_bytes / share(self.sharded_weights),
            counts.trainable * self.grad_bytes / share(self.sharded_grads),
            counts.trainable * self.optim_bytes / share(self.sharded_optim),
        )


STRATEGIES = [
    # Lightning bf16-mixed: fp32 weights and gradients, autocast computes in bf16.
    Strategy("ddp (bf16-mixed)", 4, 4, ADAM_STATE, False, False, False),
    # DeepSpeed bf16: bf16 weights and gradients, fp32 master copy (4) + Adam (8) in the optimizer.
    Strategy("deepspeed_zero2 (bf16)", 2, 2, 4 + ADAM_STATE, False, True, True),
    Strategy("deepspeed_zero3 (bf16)", 2, 2, 4 + ADAM_STATE, True, True, True),
    Strategy("deepspeed_zero3 + offload_optimizer", 2, 2, 0, True, True, True),
    # FSDP full shard, bf16-mixed: fp32 sharded weights, gradients and Adam state.
    Strategy("fsdp full_shard (bf16-mixed)", 4, 4, ADAM_STATE, True, True, True),
]


def load_model_config(model_file: Path) -> EvfModelConfig:
    parser = ArgumentParser()
    parser.add_argument("--model", type=EvfModelConfig)
    return parser.instantiate(parser.parse_args(["--model", str(model_file)])).model


def count_parameters(model_file: Path) -> Counts:
    config = load_model_config(model_file)
    with torch.device("meta"):
        model = EvfModel(config)
    apply_trainable(model, TrainableParts())
    params = list(model.parameters())
    return Counts(sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad))


def measure_one_step(model_file: Path) -> float:
    """Peak CUDA memory (GiB) of one AdamW step at batch 1, 1024x1024, bf16 autocast, one process."""
    config = load_model_config(model_file)
    device = torch.device("cuda")
    model = EvfModel(config).to(device)
    apply_trainable(model, TrainableParts())
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    size, beit = config.image_backbone.image_size, config.prompt_encoder.beit3.img_size
    torch.cuda.reset_peak_memory_stats()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        with torch.no_grad():
            features = model.encode_image(torch.randn(1, 3, size, size, device=device))
        ids = torch.randint(0, 1000, (1, 20), device=device)
        beit_pixels, image_index = (
            torch.randn(1, 3, beit, beit, device=device),
            torch.zeros(1, dtype=torch.long, device=device),
        )
        logits = model(None, beit_pixels, ids, torch.ones_like(ids), image_index, features)
    logits.float().mean().backward()
    optimizer.step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / GIB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path(__file__).parents[1] / "configs/model/evf_sam.yaml")
    parser.add_argument("--world", type=int, nargs="+", default=[1, 4, 8, 32])
    parser.add_argument("--measure", action="store_true", help="also measure one step on the CUDA device")
    args = parser.parse_args()
    counts = count_parameters(args.model)
    print(f"{args.model.name}: {counts.total:,} parameters, {counts.trainable:,} trainable (SAM image encoder frozen)")
    print("ESTIMATE of model state per rank (weights + gradients + AdamW state), GiB; activations not included")
    print(f"{'strategy':<38}" + "".join(f"{'world ' + str(w):>11}" for w in args.world))
    for strategy in STRATEGIES:
        cells = [sum(strategy.per_rank(counts, world)) / GIB for world in args.world]
        print(f"{strategy.name:<38}" + "".join(f"{cell:>11.2f}" for cell in cells))
    if args.measure:
        if not torch.cuda.is_available():
            raise SystemExit("--measure needs a CUDA device; none is visible")
        print(f"measured, one process, one step, batch 1: peak {measure_one_step(args.model):.2f} GiB")


if __name__ == "__main__":
    main()
