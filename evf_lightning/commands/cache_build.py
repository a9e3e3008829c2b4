"""`evf cache build`: encode every image of an experiment's data once with its frozen image encoder."""

from __future__ import annotations

from pathlib import Path

from evf_lightning.data.embedding_cache import StorageDtype


def build(
    experiment: Path,
    *,
    output: Path | None = None,
    dtype: StorageDtype = "bfloat16",
    batch_size: int = 8,
    rank: int = 0,
    world_size: int = 1,
    device: str = "cpu",
    overrides: list[str] | None = None,
) -> Path:
    """Encode the train/val/test images of an experiment once into an embedding cache for training and evaluation.

    The model is built exactly as `evf fit --config EXPERIMENT` builds it (same seed, same `model.init` weights),
    so the run that then sets `data.embedding_cache` to this folder accepts it; any other encoder, weights or
    preprocessing is refused. On several machines or GPUs run one rank each (`--rank R --world_size W`); each
    writes its own shard, and the cache is usable once all W have finished.

    Args:
        experiment: the experiment YAML.
        output: the cache folder (default: the config's data.embedding_cache).
        dtype: storage precision of the features.
        batch_size: images per encoder call.
        rank: this process's shard.
        world_size: how many shards the build is split into.
        device: where to encode (cpu, cuda, cuda:1, ...).
        overrides: extra `--key=value` arguments for the experiment, as `evf fit` takes them.
    """
    from evf_lightning.training.embedding_cache import build_embedding_cache
    from evf_lightning.training.lightning_cli import EvfCLI

    cli = EvfCLI(args=["--config", str(experiment), *(overrides or []), "--trainer.logger", "false"], run=False)
    data = cli.datamodule
    output = output or data.embedding_cache_dir
    if output is None:
        raise SystemExit(f"evf cache build: {experiment} sets no data.embedding_cache; pass --output FOLDER")
    splits = data.train_splits + data.val_splits + data.test_splits
    summary = build_embedding_cache(
        cli.model.model.image_backbone,
        data.sam_preprocess,
        data.readers(splits),
        Path(output),
        dtype=dtype,
        batch_size=batch_size,
        rank=rank,
        world_size=world_size,
        device=device,
    )
    print(
        f"rank {rank}/{world_size}: encoded {summary.encoded} images into {summary.part.parent} "
        f"({summary.other_ranks} left to other ranks, {summary.duplicates} duplicates skipped)"
    )
    return summary.part
