"""Raw refer reader vs its prepared Arrow index: start-up time, memory and samples/s, measured in one run.

Generates a RefCOCO-format dataset of at least --annotations annotations with `evf data synth`'s writer,
prepares its index once, then measures both readers on the same data:
- start-up: reader construction + first item, each in a fresh process (as every rank starts), median of
  --repeats; with the resident memory they add (the raw reader's parsed tables live in every process);
- samples/s: --items training-like reads (image, up to 3 prompts, their masks) at the same seeded draws.

    .venv/bin/python scripts/bench_prepared_index.py [--annotations 20000] [--items 4000] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from evf_lightning.data.expression_dataset import choose_expressions
from evf_lightning.data.prepared import PreparedReader, prepare
from evf_lightning.data.sampler import Draw
from evf_lightning.data.sources import Source
from evf_lightning.data.synthetic import write_synthetic_refer

SOURCE = Source(dataset="refcoco", split_by="unc", split="train")


def open_reader(kind: str, root: Path):
    return SOURCE.raw_reader(root) if kind == "raw" else PreparedReader(root / "prepared", root, expect=SOURCE)


def resident_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20


def child(kind: str, root: Path) -> None:
    """In a fresh process: time construction and the first item, and the resident memory they add."""
    before = resident_mb()
    start = time.perf_counter()
    reader = open_reader(kind, root)
    built = time.perf_counter()
    reader.load(0)
    done = time.perf_counter()
    print(json.dumps({"construct": built - start, "first": done - built, "rss_mb": resident_mb() - before}))


def start_up(kind: str, root: Path, repeats: int) -> dict[str, float]:
    runs = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, __file__, "--child", kind, "--workdir", str(root)], check=True, capture_output=True
        )
        runs.append(json.loads(out.stdout.decode().strip().splitlines()[-1]))
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def throughput(reader, draws: list[int], seed: int) -> float:
    for index in draws[:50]:  # warm-up: page cache, decoder
        reader.load(index)
    start = time.perf_counter()
    for number, index in enumerate(draws):
        chosen = choose_expressions(reader.num_expressions(index), 3, seed, Draw(index, 0, number))
        reader.load(index, chosen)
    return len(draws) / (time.perf_counter() - start)


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotations", type=int, default=20_000, help="at least this many annotations")
    parser.add_argument("--items", type=int, default=4000, help="reads timed per reader")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per start-up figure")
    parser.add_argument("--workdir", type=Path, default=None, help="where to generate (default: a temp folder)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", choices=["raw", "prepared"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.workdir)
        return
    with tempfile.TemporaryDirectory() as temporary:
        root = args.workdir or Path(temporary)
        start = time.perf_counter()
        images = math.ceil(args.annotations / 3)  # every generated image holds 3 or 4 objects
        summary = write_synthetic_refer(root, dataset="refcoco", split_by="unc", num_images={"train": images},
                                        seed=args.seed)  # fmt: skip
        annotations = sum(len(scene.objects) for scene in summary.scenes.values())
        annotation_mb = folder_mb(root / "refer_seg/refcoco")
        print(f"generated {images} images, {annotations} annotations, {summary.expressions['train']} expressions "
              f"({annotation_mb:.1f} MB of json + pickle) in {time.perf_counter() - start:.1f} s")  # fmt: skip
        start = time.perf_counter()
        prepared = prepare(SOURCE.raw_reader(root), root, root / "prepared", kind="refer", arguments=SOURCE.arguments)
        print(f"prepared once in {time.perf_counter() - start:.1f} s: {prepared.images} images, "
              f"{prepared.prompts} prompts, {prepared.masks} masks, {folder_mb(root / 'prepared'):.1f} MB")  # fmt: skip

        cold = {kind: start_up(kind, root, args.repeats) for kind in ("raw", "prepared")}
        draws = np.random.default_rng(args.seed).integers(images, size=args.items).tolist()
        rates = {kind: throughput(open_reader(kind, root), draws, args.seed) for kind in ("raw", "prepared")}

        def row(name: str, raw: float, prepared: float, unit: str) -> str:
            return f"{name:<28}{raw:>12.{unit}}{prepared:>12.{unit}}{raw / prepared:>14.2f}x"

        print(f"\n{'':<28}{'raw':>12}{'prepared':>12}{'raw/prepared':>15}")
        for key, name in (("construct", "construction (s)"), ("first", "first item (s)")):
            print(row(name, cold["raw"][key], cold["prepared"][key], "4f"))
        total = {kind: cold[kind]["construct"] + cold[kind]["first"] for kind in cold}
        print(row("start-up total (s)", total["raw"], total["prepared"], "4f"))
        print(row("resident memory added (MB)", cold["raw"]["rss_mb"], cold["prepared"]["rss_mb"], "1f"))
        print(row(f"samples/s ({args.items} reads)", rates["raw"], rates["prepared"], "0f"))
        print(f"(start-up: median of {args.repeats} fresh processes each; samples/s in this process)")


if __name__ == "__main__":
    main()
