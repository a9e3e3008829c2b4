"""The frozen-encoder embedding cache: same loss and gradients as encoding, and never used when it does not fit."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from evf_lightning.cli import main
from evf_lightning.data.batch import ReferBatch
from evf_lightning.data.datamodule import EvfDataModule
from evf_lightning.data.embedding_cache import EmbeddingCache, EmbeddingCacheError, image_key
from evf_lightning.data.sources import Source
from evf_lightning.data.transforms import SamPreprocess
from evf_lightning.models.evf import EvfModelConfig
from evf_lightning.models.sam2 import Sam2BackboneConfig
from evf_lightning.training.embedding_cache import build_embedding_cache, check_cache_matches
from evf_lightning.training.losses import evf_loss
from evf_lightning.training.module import EvfLitModule
from evf_lightning.training.trainable import TrainableParts

REPO = Path(__file__).resolve().parents[2]
TRAIN = Source(dataset="refcoco", split_by="unc", split="train")
VAL = Source(dataset="refcoco", split_by="unc", split="val")
TEST_A = Source(dataset="refcoco", split_by="unc", split="testA")
IMAGE_SIZE, BEIT_SIZE = 128, 64


def tiny_module(seed: int) -> EvfLitModule:
    torch.manual_seed(seed)
    return EvfLitModule(EvfModelConfig.tiny(image_size=IMAGE_SIZE, beit_image_size=BEIT_SIZE))


def datamodule(synth_root: Path, cache: Path | None = None) -> EvfDataModule:
    data = EvfDataModule(
        str(synth_root),
        str(synth_root / "tokenizer"),
        train=[TRAIN],
        val=[VAL],
        sam_image_size=IMAGE_SIZE,
        beit_image_size=BEIT_SIZE,
        batch_size=4,
        num_workers=0,
        embedding_cache=None if cache is None else str(cache),
    )
    data.setup("fit")
    return data


@pytest.fixture(scope="module")
def built(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[EvfLitModule, Path]:
    """A tiny model and the fp16 cache its frozen encoder wrote for the train and val images."""
    module = tiny_module(seed=0)
    folder = tmp_path_factory.mktemp("cache")
    data = datamodule(synth_root)
    summary = build_embedding_cache(
        module.model.image_backbone,
        data.sam_preprocess,
        data.readers([TRAIN, VAL]),
        folder,
        dtype="float16",
        batch_size=16,
    )
    assert summary.encoded == 96 + 24 and summary.other_ranks == 0
    return module, folder


def loss_and_gradients(module: EvfLitModule, batch: ReferBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    module.zero_grad()
    logits = module.full_resolution_logits(batch, module(batch))
    loss = evf_loss(logits, [m.float() for m in batch.masks]).total
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


def test_training_from_the_cache_gives_the_loss_and_gradients_of_encoding(built, synth_root):
    module, folder = built
    on_the_fly = next(iter(datamodule(synth_root).train_dataloader()))
    cached = next(iter(datamodule(synth_root, folder).train_dataloader()))
    assert cached.sam_pixels is None and on_the_fly.cached_features is None  # SAM pixels never preprocessed
    assert cached.texts == on_the_fly.texts and cached.resized_hw == on_the_fly.resized_hw

    loss, grads = loss_and_gradients(module, on_the_fly)
    cached_loss, cached_grads = loss_and_gradients(module, cached)
    assert grads.keys() == cached_grads.keys()
    assert any(name.startswith("model.image_backbone.mask_decoder.") for name in grads)
    assert not any(name.startswith("model.image_backbone.image_encoder.") for name in grads)
    torch.testing.assert_close(cached_loss, loss, rtol=1e-3, atol=1e-4)
    for name, grad in grads.items():
        # fp16 storage rounds each embedding value by up to 2^-11 relative; gradients follow at that scale.
        torch.testing.assert_close(cached_grads[name], grad, rtol=1e-2, atol=1e-3 * grad.abs().max().item() + 1e-7)


def test_a_cache_of_other_weights_or_preprocessing_is_refused(built):
    module, folder = built
    cache = EmbeddingCache(folder)
    check_cache_matches(cache, module.model.image_backbone, SamPreprocess(IMAGE_SIZE))  # the builder's own: fine

    with pytest.raises(EmbeddingCacheError, match=r"encode_weights_sha256: cache '[0-9a-f]+' vs run '[0-9a-f]+'"):
        check_cache_matches(cache, tiny_module(seed=1).model.image_backbone, SamPreprocess(IMAGE_SIZE))
    with pytest.raises(EmbeddingCacheError, match=r"preprocessing.resize: cache 'longest_pad' vs run 'stretch'"):
        check_cache_matches(cache, module.model.image_backbone, SamPreprocess(IMAGE_SIZE, resize="stretch"))
    other_size = EvfLitModule(EvfModelConfig.tiny(image_size=64, beit_image_size=BEIT_SIZE))
    with pytest.raises(EmbeddingCacheError, match=r"config.image_size: cache 128 vs run 64") as refused:
        check_cache_matches(cache, other_size.model.image_backbone, SamPreprocess(64))
    assert "cache identity:" in str(refused.value) and "run identity:" in str(refused.value)

    module.model.image_backbone.image_encoder.requires_grad_(True)
    try:
        with pytest.raises(EmbeddingCacheError, match="the encoder it stands for trains"):
            check_cache_matches(cache, module.model.image_backbone, SamPreprocess(IMAGE_SIZE))
    finally:
        module.model.image_backbone.image_encoder.requires_grad_(False)


def test_a_truncated_altered_or_incomplete_cache_is_refused(built, tmp_path):
    _, folder = built
    damaged = tmp_path / "damaged"
    shutil.copytree(folder, damaged)
    shard = next(damaged.glob("shard-*.bin"))
    data = bytearray(shard.read_bytes())

    shard.write_bytes(data[:-2])
    with pytest.raises(EmbeddingCacheError, match="truncated or replaced"):
        EmbeddingCache(damaged)

    data[12345] ^= 0xFF
    shard.write_bytes(data)
    with pytest.raises(EmbeddingCacheError, match="SHA-256 differs"):
        EmbeddingCache(damaged)

    data[12345] ^= 0xFF
    shard.write_bytes(data)
    EmbeddingCache(damaged)  # repaired: opens again
    part = next(damaged.glob("part-*.json"))
    part.write_text(json.dumps({**json.loads(part.read_text()), "world_size": 2}))  # as rank 0 of 2 would write
    with pytest.raises(EmbeddingCacheError, match=r"incomplete build, parts of ranks \[0\] for world sizes \[2\]"):
        EmbeddingCache(damaged)


def test_ranks_write_their_own_shards_of_one_cache(built, synth_root, tmp_path):
    module, folder = built
    data = datamodule(synth_root)
    summaries = [
        build_embedding_cache(
            module.model.image_backbone,
            data.sam_preprocess,
            data.readers([VAL]),
            tmp_path,
            dtype="float16",
            rank=rank,
            world_size=2,
        )
        for rank in (0, 1)
    ]
    assert sorted(p.name for p in tmp_path.glob("shard-*")) == ["shard-00000-of-00002.bin", "shard-00001-of-00002.bin"]
    assert summaries[0].encoded + summaries[1].encoded == 24 and min(s.encoded for s in summaries) > 0
    sharded, whole = EmbeddingCache(tmp_path), EmbeddingCache(folder)
    assert len(sharded) == 24 and sharded.identity == whole.identity
    for key in list(sharded._where)[:5]:
        torch.testing.assert_close(sharded.features(key)[0], whole.features(key)[0], rtol=0, atol=0)


def fit(synth_root: Path, tmp_path: Path, cache: Path, seed: int) -> None:
    main(
        [
            "fit", "--config", str(REPO / "configs/experiments/quickstart.yaml"),
            "--model.model", str(REPO / "configs/model/evf_tiny.yaml"), "--model.trainable.image_encoder=false",
            f"--seed_everything={seed}", "--data.root", str(synth_root),
            "--data.tokenizer", str(synth_root / "tokenizer"),
            "--data.batch_size=4", f"--data.embedding_cache={cache}", "--data.test=[]",
            "--trainer.max_steps=2", "--trainer.limit_val_batches=1", "--trainer.val_check_interval=2",
            "--trainer.logger=false", "--trainer.default_root_dir", str(tmp_path),
        ]
    )  # fmt: skip


def test_evf_cache_build_then_fit_reads_it_and_another_seed_is_refused(synth_root, tmp_path):
    cache = tmp_path / "cache"
    experiment = str(REPO / "configs/experiments/quickstart.yaml")
    overrides = [
        f"--data.root={synth_root}", f"--data.tokenizer={synth_root / 'tokenizer'}", "--data.test=[]",
        f"--model.model={REPO / 'configs/model/evf_tiny.yaml'}", "--model.trainable.image_encoder=false",
    ]  # fmt: skip
    main(["cache", "build", experiment, "--output", str(cache), "--overrides", str(overrides)])
    assert len(EmbeddingCache(cache)) == 96 + 24

    fit(synth_root, tmp_path / "same", cache, seed=0)
    assert (tmp_path / "same/checkpoints/last.ckpt").is_file()
    with pytest.raises(EmbeddingCacheError, match="encode_weights_sha256"):
        fit(synth_root, tmp_path / "other", cache, seed=1)
    assert not (tmp_path / "other/checkpoints").exists()


def test_sam2_high_res_levels_are_cached_and_its_decoder_projections_are_part_of_the_identity(synth_root, tmp_path):
    torch.manual_seed(0)
    config = EvfModelConfig(Sam2BackboneConfig.tiny())
    backbone = EvfLitModule(config, TrainableParts(mask_decoder=False, no_mask_embed=False)).model.image_backbone
    data = datamodule(synth_root)
    preprocess = SamPreprocess(IMAGE_SIZE, resize="longest_then_stretch")
    build_embedding_cache(backbone, preprocess, data.readers([TEST_A]), tmp_path, dtype="bfloat16", batch_size=4)
    cache = EmbeddingCache(tmp_path)
    assert [m.shape for m in cache.layout] == [(32, 8, 8), (4, 32, 32), (8, 16, 16)]  # embedding, then high-res

    sample = data.readers([TEST_A])[0].load(3)
    with torch.inference_mode():
        encoded = backbone.encode(preprocess(sample.image)[0][None])
    fresh_maps = [encoded.embedding, *encoded.high_res]
    for cached, fresh in zip(cache.features(image_key(sample.image)), fresh_maps, strict=True):
        torch.testing.assert_close(cached, fresh[0], rtol=1e-2, atol=1e-2 * fresh.abs().max().item())

    check_cache_matches(cache, backbone, preprocess)
    backbone.mask_decoder.requires_grad_(True)
    with pytest.raises(EmbeddingCacheError, match=r"trains \(mask_decoder.conv_s0.weight and 3 more"):
        check_cache_matches(cache, backbone, preprocess)
    backbone.mask_decoder.requires_grad_(False)
    with torch.no_grad():
        backbone.mask_decoder.conv_s0.weight.add_(1e-3)  # read by encode, though it sits in the decoder
    with pytest.raises(EmbeddingCacheError, match="encode_weights_sha256"):
        check_cache_matches(cache, backbone, preprocess)
