"""Per image-expression inference latency: our evaluation path vs the official per-image loop, same weights.

The official evaluation (hustvl/EVF-SAM eval.py) runs one image at a time (batch size 1) with all its
expressions, through the original SAM code's attention (explicit matmul + softmax with the decomposed
relative-position bias), in the precision asked (fp32 here, the only CPU choice there). The baseline below is
that loop, re-implemented over our modules: transformers' SAM with `attn_implementation="eager"` (the same
arithmetic as the original attention) loaded with the very weights of our model, one image per call, fp32.
Ours differs only in what the framework does for speed: SDPA attention, several images per encoder call, and
optionally autocast (bf16). Both share preprocessing, BEiT-3 (SDPA in both: it is under 3% of the time) and
the upscaling of mask logits to the original image size, and both are timed from the preprocessed items.
The masks are compared: fp32 must agree pixel for pixel up to float rounding (IoU >= 0.99 per mask).

With --per-expression the figure for the official single-prompt demo loop (inference.py: the image encoded
again for every expression) is added.

    .venv/bin/python scripts/bench_inference.py [--device cpu|cuda] [--images 2] [--batch-images 2]
        [--autocast bf16] [--per-expression] [--sam vit_b|vit_l|vit_h] [--out runs/bench/inference]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from bench_common import SAM_SIZES, describe, peak_memory_mb, real_size_config, write_report
from torch import Tensor

from evf_lightning.data.batch import ExpressionItem, ReferBatch, collate_expressions
from evf_lightning.data.datamodule import EvfDataModule
from evf_lightning.data.sources import Source
from evf_lightning.data.synthetic import write_synthetic_dataset
from evf_lightning.training.module import EvfLitModule

VAL = Source(dataset="refcoco", split_by="unc", split="val")


def masks_of(module: EvfLitModule, batch: ReferBatch) -> list[Tensor]:
    """Binary masks at each image's original size, one per expression, as the evaluation scores them."""
    return [m for image in module.full_resolution_logits(batch, module(batch)) for m in image > 0]


def timed(run: Callable[[], list[Tensor]], device: str) -> tuple[list[Tensor], dict[str, float]]:
    """The masks, the seconds, and on a GPU the path's own peak memory (a CPU's peak RSS is the whole run's)."""
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    with torch.inference_mode():
        masks = run()
    if cuda:
        torch.cuda.synchronize()
    figures = {"seconds": time.perf_counter() - start}
    if cuda:
        figures["peak_mb"] = peak_memory_mb(device)
    return masks, figures


def official_loop(module: EvfLitModule, items: list[ExpressionItem], pad: int, device: str) -> list[Tensor]:
    """eval.py: one image per forward, all of its expressions sharing its embedding, fp32."""
    return [m for item in items for m in masks_of(module, to(collate_expressions([item], pad), device))]


def per_expression_loop(module: EvfLitModule, items: list[ExpressionItem], pad: int, device: str) -> list[Tensor]:
    """inference.py: one expression per forward, the image encoded again every time."""
    singles = [
        ExpressionItem(
            item.sam_pixels, item.beit_pixels, [ids], item.masks[j : j + 1], item.resized_hw, [text], item.source
        )
        for item in items
        for j, (ids, text) in enumerate(zip(item.token_ids, item.texts, strict=True))
    ]
    return official_loop(module, singles, pad, device)


def our_path(
    module: EvfLitModule, items: list[ExpressionItem], pad: int, device: str, batch_images: int, autocast: str | None
) -> list[Tensor]:
    """Our evaluation step: `batch_images` images per forward, SDPA, optional autocast."""
    kind = "cuda" if device.startswith("cuda") else "cpu"
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(autocast or "")
    masks = []
    for start in range(0, len(items), batch_images):
        batch = to(collate_expressions(items[start : start + batch_images], pad), device)
        with torch.autocast(kind, dtype=dtype, enabled=dtype is not None):
            masks += masks_of(module, batch)
    return masks


def to(batch: ReferBatch, device: str) -> ReferBatch:
    fields = ("sam_pixels", "beit_pixels", "input_ids", "attention_mask", "image_index")
    for name in fields:
        setattr(batch, name, getattr(batch, name).to(device))
    return batch


def agreement(ours: list[Tensor], theirs: list[Tensor]) -> dict[str, float]:
    """Worst per-mask IoU (1 where both are empty), pixel agreement, and how much of the image the masks cover."""
    ious = []
    for a, b in zip(ours, theirs, strict=True):
        union = (a | b).sum().item()
        ious.append(1.0 if union == 0 else (a & b).sum().item() / union)
    pixels = sum(a.numel() for a in ours)
    same = sum((a == b).sum().item() for a, b in zip(ours, theirs, strict=True))
    covered = sum(b.sum().item() for b in theirs)
    return {"min_iou": min(ious), "pixel_agreement": same / pixels, "baseline_foreground": covered / pixels}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--batch-images", type=int, default=2, help="images per forward on our path")
    parser.add_argument("--autocast", default="bf16", choices=["bf16", "fp16", "none"])
    parser.add_argument("--per-expression", action="store_true", help="also time inference.py's loop")
    parser.add_argument("--sam", choices=sorted(SAM_SIZES), default="vit_b", help="SAM image encoder size")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/inference"))
    args = parser.parse_args()
    torch.manual_seed(0)
    ours = EvfLitModule(real_size_config("sdpa", args.sam)).eval().to(args.device)
    baseline = EvfLitModule(real_size_config("eager", args.sam)).eval()
    baseline.model.load_state_dict(ours.model.state_dict())  # the same weights
    baseline.to(args.device)

    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        write_synthetic_dataset(root, train_images=1, val_images=args.images, test_images=1, image_size=(480, 640))
        data = EvfDataModule(str(root), str(root / "tokenizer"), val=[VAL], num_workers=0)
        data.setup("validate")
        items = [data.val_sets[0][i] for i in range(args.images)]
        pad = data.tokenizer.pad_token_id
    expressions = sum(len(item.token_ids) for item in items)

    runs: dict[str, Callable[[], list[Tensor]]] = {
        "official per-image loop (eval.py): eager, fp32, 1 image per call": lambda: official_loop(
            baseline, items, pad, args.device
        ),
        f"ours: SDPA, fp32, {args.batch_images} images per call": lambda: our_path(
            ours, items, pad, args.device, args.batch_images, None
        ),
    }
    if args.autocast != "none":
        runs[f"ours: SDPA, {args.autocast} autocast, {args.batch_images} images per call"] = lambda: our_path(
            ours, items, pad, args.device, args.batch_images, args.autocast
        )
    if args.per_expression:
        runs["official demo loop (inference.py): eager, fp32, 1 expression per call"] = lambda: per_expression_loop(
            baseline, items, pad, args.device
        )
    results: dict[str, dict[str, float]] = {}
    reference: list[Tensor] | None = None
    for name, run in runs.items():
        masks, figures = timed(run, args.device)
        reference = reference if reference is not None else masks
        figures["s_per_expression"] = figures["seconds"] / expressions
        results[name] = {**figures, **agreement(masks, reference)}
        print(f"{name}: {results[name]}", flush=True)  # each figure as soon as it is measured
    baseline_name = next(iter(runs))
    for result in results.values():
        result["speedup_vs_official"] = results[baseline_name]["seconds"] / result["seconds"]
    fp32 = results[f"ours: SDPA, fp32, {args.batch_images} images per call"]
    assert fp32["min_iou"] >= 0.99, f"fp32 SDPA masks disagree with the eager baseline: {fp32}"

    header = ["path", "s / image-expression", "speed-up vs eval.py loop", "min mask IoU vs baseline", "pixels agree"]
    rows = [
        [name, f"{r['s_per_expression']:.3f}", f"{r['speedup_vs_official']:.2f}x", f"{r['min_iou']:.4f}",
         f"{r['pixel_agreement']:.5f}"]
        for name, r in results.items()
    ]  # fmt: skip
    report = {
        "paths": results,
        "images": args.images,
        "expressions": expressions,
        "device": args.device,
        "peak_mb_whole_run": peak_memory_mb(args.device),
        "model": f"{describe(args.sam)}, random init, same weights on every path",
    }
    print(write_report(args.out, report, header, rows))
    print(f"({args.images} images, {expressions} expressions, {args.device}; peak memory of the whole run "
          f"{report['peak_mb_whole_run']:.0f} MB; baseline foreground "
          f"{results[baseline_name]['baseline_foreground']:.3f} of the pixels)")  # fmt: skip


if __name__ == "__main__":
    main()
