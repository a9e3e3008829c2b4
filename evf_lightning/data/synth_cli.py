"""`evf data synth`: write the embedded default dataset."""

from __future__ import annotations

import time


def synth(
    out: str,
    seed: int = 0,
    train_images: int = 2000,
    val_images: int = 200,
    test_images: int = 100,
    datasets: list[str] | None = None,
) -> None:
    """Generate a RefCOCO-format shapes dataset and its tokenizer under OUT.

    Args:
        out: folder to write (`<out>/refer_seg/...`, `<out>/tokenizer`).
        seed: the same seed writes the same bytes.
        train_images: images in the train split.
        val_images: images in the val split.
        test_images: images in each test split (testA/testB, or test for refcocog).
        datasets: refer dataset names to write (refcoco, refcoco+, refcocog, refclef).
    """
    from evf_lightning.data.synthetic import write_synthetic_dataset

    start = time.perf_counter()
    summaries = write_synthetic_dataset(
        out,
        datasets=datasets or ["refcoco"],
        train_images=train_images,
        val_images=val_images,
        test_images=test_images,
        seed=seed,
    )
    for summary in summaries:
        parts = ", ".join(f"{s}: {n} images / {summary.expressions[s]} expressions" for s, n in summary.images.items())
        print(f"{summary.dataset} ({summary.split_by}) -> {out}/refer_seg/{summary.dataset}: {parts}")
    print(f"tokenizer -> {out}/tokenizer   ({time.perf_counter() - start:.1f} s)")
