"""`evf data synth`: write the embedded default dataset and, on request, each multitask format (no torch, no
Lightning: it starts in a second)."""

from __future__ import annotations

import time

from evf_lightning.data.refer import SPLIT_BYS
from evf_lightning.data.sources import MultitaskKind


def synth(
    out: str,
    seed: int = 0,
    train_images: int = 2000,
    val_images: int = 200,
    test_images: int = 100,
    datasets: list[str] | None = None,
    formats: list[MultitaskKind] | None = None,
    format_images: int | None = None,
) -> None:
    """Write a shapes dataset in the real RefCOCO on-disk format, any multitask formats, and a tokenizer, under OUT.

    Images of 3-4 coloured shapes, each with expressions that need its colour, shape, size or position
    ("the small red circle", "the leftmost square") to find it. Files: OUT/refer_seg/<dataset>/
    instances.json and refs(<split_by>).p, COCO-named JPEGs under OUT/refer_seg/images/, and a
    sentencepiece tokenizer folder OUT/tokenizer in the layout of the official checkpoints. The same
    seed writes the same bytes.

    Args:
        out: folder to write into (created if missing; files of the same names are replaced).
        seed: random seed of the whole dataset.
        train_images: images in the train split.
        val_images: images in the val split.
        test_images: images in each test split (testA and testB; test for refcocog; testA-C for refclef).
        datasets: refer datasets to write, each with every split_by it is released with: refcoco (unc,
            google), refcoco+ (unc), refcocog (umd, google), refclef (unc, berkeley; RLE masks).
            Default: refcoco.
        formats: multitask formats to write beside the refer data, each in its real layout under OUT
            (reference/datasets.md): grefcoco (refer_seg/grefcoco: grefs(unc).json with multi- and no-target
            expressions), ade20k (ade20k/: mode-L label PNGs, the 150-name class list; also val_images
            validation images), objects365 (Object365/raw/Objects365_v1/2019-08-02/o365_res_instances.json,
            RLE masks), part_imagenet (PartImageNet/: polygons, 40 part classes), pascal_part (vlpart/pascal_part/
            train.json, VLPart's RLE parts), human_parsing (humanparsing/: ATR labels). E.g.
            --formats '[ade20k, objects365]'. The tokenizer then also learns their prompts.
        format_images: training images of each multitask format (default: train_images).
    """
    from evf_lightning.data.synthetic import write_synthetic_dataset

    names = list(datasets or ["refcoco"])
    for name in names:
        if name not in SPLIT_BYS:
            raise SystemExit(f"evf data synth: unknown dataset {name!r}; expected some of {list(SPLIT_BYS)}")
    start = time.perf_counter()
    written = write_synthetic_dataset(
        out,
        datasets=names,
        train_images=train_images,
        val_images=val_images,
        test_images=test_images,
        seed=seed,
        formats=formats or [],
        format_images=format_images,
    )
    for summary in written.refer:
        counts = ", ".join(
            f"{split} {n} images / {summary.expressions[split]} expressions" for split, n in summary.images.items()
        )
        split_bys = ", ".join(f"refs({name}).p" for name in summary.split_bys)
        print(f"{summary.dataset}: {counts}")
        print(f"  {out}/refer_seg/{summary.dataset}/instances.json, {split_bys}")
    for format_summary in written.formats:
        print(f"{format_summary.kind}: {format_summary.images} images / {len(format_summary.prompts)} prompts")
        print(f"  {format_summary.annotations}")
    print(
        f"tokenizer: {written.tokenizer_dir} ({written.token_ids} token ids; a text encoder needs vocab_size >= that)"
    )
    print(f"written in {time.perf_counter() - start:.1f} s")
