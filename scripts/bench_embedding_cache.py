"""Training with vs without the embedding cache at a real size, and the cache build's throughput, in one run.

SAM at 1024 px (ViT-B by default; --sam vit_h for the released EVF-SAM's SAM) + BEiT-3-B at 224 px (random init),
the released recipe's trainable parts (image encoder frozen), on generated RefCOCO-format data. Three fresh
processes, so each peak memory is its own:
- build: `build_embedding_cache` over the train images (images/s);
- train without the cache: `Trainer.fit`, each step preprocesses SAM pixels and encodes them;
- train with the cache: the same steps from the cached features.
Step time is measured between consecutive batch ends (data loading included), after --warmup steps.

    .venv/bin/python scripts/bench_embedding_cache.py [--device cpu|cuda] [--images 6] [--batch-size 2]
        [--steps 3] [--sam vit_b|vit_l|vit_h] [--precision 32-true|bf16-mixed] [--out runs/bench/embedding_cache]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_common import SAM_SIZES, describe, peak_memory_mb, real_size_config, write_report
from lightning import Callback, Trainer

from evf_lightning.data.datamodule import EvfDataModule
from evf_lightning.data.sources import Source
from evf_lightning.data.synthetic import write_synthetic_dataset
from evf_lightning.training.embedding_cache import build_embedding_cache
from evf_lightning.training.module import EvfLitModule

TRAIN = Source(dataset="refcoco", split_by="unc", split="train")


class StepClock(Callback):
    """Times between consecutive training batch ends, and counts the expressions of each batch."""

    def __init__(self) -> None:
        self.ends: list[float] = []
        self.expressions: list[int] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()
        self.ends.append(time.perf_counter())
        self.expressions.append(batch.num_expressions)


def data_module(root: Path, batch_size: int, cache: Path | None) -> EvfDataModule:
    return EvfDataModule(
        str(root),
        str(root / "tokenizer"),
        train=[TRAIN],
        batch_size=batch_size,
        num_workers=0,
        embedding_cache=None if cache is None else str(cache),
    )


def module(sam: str) -> EvfLitModule:
    torch.manual_seed(0)  # the same weights in every process, as the cache identity requires
    return EvfLitModule(real_size_config(sam=sam))


def child_build(args: argparse.Namespace) -> dict[str, float]:
    model = module(args.sam)
    data = data_module(args.workdir, args.batch_size, None)
    start = time.perf_counter()
    summary = build_embedding_cache(
        model.model.image_backbone,
        data.sam_preprocess,
        data.readers([TRAIN]),
        args.workdir / "cache",
        batch_size=args.batch_size,
        device=args.device,
    )
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"images": summary.encoded, "seconds": seconds, "images_per_s": summary.encoded / seconds}


def child_train(args: argparse.Namespace, cached: bool) -> dict[str, float]:
    clock = StepClock()
    trainer = Trainer(
        accelerator="gpu" if args.device.startswith("cuda") else "cpu",
        devices=1,
        precision=args.precision,
        max_steps=args.warmup + args.steps,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[clock],
    )
    cache = args.workdir / "cache" if cached else None
    trainer.fit(module(args.sam), data_module(args.workdir, args.batch_size, cache))
    timed = clock.ends[args.warmup - 1 :]
    seconds = (timed[-1] - timed[0]) / args.steps
    images = args.batch_size
    expressions = sum(clock.expressions[args.warmup :]) / args.steps
    return {
        "s_per_step": seconds,
        "steps_per_s": 1 / seconds,
        "images_per_s": images / seconds,
        "expressions_per_s": expressions / seconds,
    }


def run_child(args: argparse.Namespace, mode: str) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", mode, "--workdir", str(args.workdir), "--device", args.device]
    command += ["--batch-size", str(args.batch_size), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    command += ["--precision", args.precision, "--sam", args.sam]
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{mode}: {result}", flush=True)  # each figure as soon as it is measured: a long run may be cut short
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=6, help="train images generated (and cached)")
    parser.add_argument("--batch-size", type=int, default=2, help="images per step (3 expressions each)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per mode")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--precision", default="32-true", help="Lightning trainer precision")
    parser.add_argument("--sam", choices=sorted(SAM_SIZES), default="vit_b", help="SAM image encoder size")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/embedding_cache"))
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--child", choices=["build", "train", "train_cached"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = child_build(args) if args.child == "build" else child_train(args, args.child == "train_cached")
        print(json.dumps({**result, "peak_mb": peak_memory_mb(args.device)}))
        return
    with tempfile.TemporaryDirectory() as temporary:
        args.workdir = args.workdir or Path(temporary)
        write_synthetic_dataset(args.workdir, train_images=args.images, val_images=1, test_images=1,
                                image_size=(480, 640), seed=0)  # fmt: skip
        results = {mode: run_child(args, mode) for mode in ("build", "train", "train_cached")}
    plain, cached, build = results["train"], results["train_cached"], results["build"]
    results["speedup_per_step"] = plain["s_per_step"] / cached["s_per_step"]
    results["setup"] = {k: str(v) for k, v in vars(args).items() if k not in ("child", "workdir")}
    results["setup"]["model"] = f"{describe(args.sam)}, random init, image encoder frozen"
    header = ["", "s/step", "steps/s", "images/s", "expressions/s", "peak MB"]
    rows = [
        [name, f"{r['s_per_step']:.3f}", f"{r['steps_per_s']:.3f}", f"{r['images_per_s']:.2f}",
         f"{r['expressions_per_s']:.2f}", f"{r['peak_mb']:.0f}"]
        for name, r in (("train, encoding on the fly", plain), ("train, from the cache", cached))
    ]  # fmt: skip
    rows.append(["speed-up per step", f"{results['speedup_per_step']:.1f}x", "", "", "", ""])
    rows.append([f"cache build ({build['images']} images)", "", "", f"{build['images_per_s']:.2f}", "",
                 f"{build['peak_mb']:.0f}"])  # fmt: skip
    print(write_report(args.out, results, header, rows))
    print(f"({describe(args.sam)}, {args.device}, precision {args.precision}, batch {args.batch_size} images, "
          f"{args.steps} timed steps)")  # fmt: skip


if __name__ == "__main__":
    main()
