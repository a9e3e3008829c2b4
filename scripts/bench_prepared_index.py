"""Raw reader vs its prepared Arrow index: start-up time, memory and samples/s, measured in one run.

Generates a dataset of at least --annotations annotations with `evf data synth`'s writer, in the RefCOCO
format (pickle + json) or, with --kind objects365, as `o365_res_instances.json` (one json of RLE masks, the
format the index was built for), prepares its index once, then measures both readers on the same data:
- start-up: reader construction + first item, each in a fresh process (as every rank starts), median of
  --repeats; with the resident memory they add (the raw reader's parsed tables live in every process);
- samples/s: --items training-like reads (image, up to 3 prompts, their masks) at the same seeded draws.

    .venv/bin/python scripts/bench_prepared_index.py [--kind refer|objects365] [--annotations 20000] [--items 4000]
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

import datasets
import numpy as np

from evf_lightning.data.expression_dataset import choose_expressions
from evf_lightning.data.prepared import PreparedReader, prepare
from evf_lightning.data.sampler import Draw
from evf_lightning.data.sources import Source
from evf_lightning.data.synthetic import write_synthetic_refer
from evf_lightning.data.synthetic_objects365 import write_synthetic_objects365

SOURCES = {"refer": Source(dataset="refcoco", split_by="unc", split="train"), "objects365": Source(kind="objects365")}


def open_reader(which: str, source: Source, root: Path):
    return source.raw_reader(root) if which == "raw" else PreparedReader(root / "prepared", root, expect=source)


def generate(kind: str, root: Path, annotations: int, seed: int) -> tuple[int, int, Path]:
    """Write at least `annotations` annotations of `kind`; (images, annotations, annotation file or folder)."""
    if kind == "refer":
        images = math.ceil(annotations / 3)  # every generated image holds 3 or 4 objects
        summary = write_synthetic_refer(root, dataset="refcoco", split_by="unc", num_images={"train": images},
                                        seed=seed)  # fmt: skip
        return images, sum(len(scene.objects) for scene in summary.scenes.values()), root / "refer_seg/refcoco"
    written = write_synthetic_objects365(root, images=math.ceil(annotations / 2), seed=seed)  # 2-3 kept per image
    return written.images, written.annotations, written.annotation_file


def resident_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20


def child(which: str, source: Source, root: Path) -> None:
    """In a fresh process: time construction and the first item, and the resident memory they add."""
    before = resident_mb()
    start = time.perf_counter()
    reader = open_reader(which, source, root)
    built = time.perf_counter()
    reader.load(0)
    done = time.perf_counter()
    print(json.dumps({"construct": built - start, "first": done - built, "rss_mb": resident_mb() - before}))


def start_up(which: str, kind: str, root: Path, repeats: int) -> dict[str, float]:
    runs = []
    for _ in range(repeats):
        command = [sys.executable, __file__, "--child", which, "--kind", kind, "--workdir", str(root)]
        out = subprocess.run(command, check=True, capture_output=True)
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
    """Megabytes of a file, or of every file under a folder."""
    files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
    return sum(f.stat().st_size for f in files) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=list(SOURCES), default="refer", help="the format to generate and read")
    parser.add_argument("--annotations", type=int, default=20_000, help="at least this many annotations")
    parser.add_argument("--items", type=int, default=4000, help="reads timed per reader")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per start-up figure")
    parser.add_argument("--workdir", type=Path, default=None, help="where to generate (default: a temp folder)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", choices=["raw", "prepared"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    source = SOURCES[args.kind]
    datasets.disable_progress_bars()  # the figures are the output
    if args.child:
        child(args.child, source, args.workdir)
        return
    with tempfile.TemporaryDirectory() as temporary:
        root = args.workdir or Path(temporary)
        start = time.perf_counter()
        images, annotations, folder = generate(args.kind, root, args.annotations, args.seed)
        if annotations < args.annotations:
            raise SystemExit(f"generated only {annotations} annotations; ask for more with --annotations")
        print(f"generated {images} images, {annotations} annotations ({folder_mb(folder):.1f} MB of annotation "
              f"files) in {time.perf_counter() - start:.1f} s")  # fmt: skip
        start = time.perf_counter()
        raw = source.raw_reader(root)
        prepared = prepare(raw, root, root / "prepared", kind=source.kind, arguments=source.arguments)
        print(f"prepared once in {time.perf_counter() - start:.1f} s: {prepared.images} images, "
              f"{prepared.prompts} prompts, {prepared.masks} masks, {folder_mb(root / 'prepared'):.1f} MB")  # fmt: skip

        cold = {which: start_up(which, args.kind, root, args.repeats) for which in ("raw", "prepared")}
        draws = np.random.default_rng(args.seed).integers(len(raw), size=args.items).tolist()
        rates = {which: throughput(open_reader(which, source, root), draws, args.seed) for which in ("raw", "prepared")}

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
