"""The model side of the embedding cache: what identifies a frozen encoder, the build loop, and the refusal.

data/embedding_cache.py stores and serves tensors by image key and knows nothing of models. Here the cache
meets the model: a cache is valid for a run only if it was built by the same backbone family and config, the
same weights of everything `encode` reads, and the same SAM preprocessing. Anything else is refused with both
identities named, never silently used: stale embeddings train a model that fails at evaluation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from evf_lightning.data.embedding_cache import (
    EmbeddingCache,
    EmbeddingCacheError,
    EmbeddingCacheWriter,
    StorageDtype,
    image_key,
)
from evf_lightning.data.expression_dataset import SampleReader
from evf_lightning.data.transforms import SamPreprocess
from evf_lightning.models.image_backbone import ImageBackbone
from evf_lightning.models.image_features import ImageFeatures

# Fields that do not change what given weights compute (beyond float rounding): a kernel choice, and the std that
# only from-scratch weights are drawn with (the weights' own hash is part of the identity).
_NOT_IDENTITY = ("attn_implementation", "init_std")


def weights_sha256(tensors: dict[str, Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of `tensors`, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def encoder_identity(backbone: ImageBackbone, preprocess: SamPreprocess) -> dict[str, Any]:
    """What a cache built by `backbone` over pixels from `preprocess` is valid for, as plain JSON values."""
    config = {k: v for k, v in asdict(backbone.config).items() if k not in _NOT_IDENTITY}
    identity = {
        "family": config["family"],
        "config": config,
        "encode_weights_sha256": weights_sha256(backbone.encode_tensors()),
        "preprocessing": asdict(preprocess),
    }
    return json.loads(json.dumps(identity))  # tuples -> lists, as the manifest holds them


def _differences(built: Any, wanted: Any, path: str = "") -> list[str]:
    if isinstance(built, dict) and isinstance(wanted, dict):
        return [d for key in sorted(set(built) | set(wanted)) for d in _differences(
            built.get(key), wanted.get(key), f"{path}.{key}" if path else key
        )]  # fmt: skip
    return [] if built == wanted else [f"{path}: cache {built!r} vs run {wanted!r}"]


def check_cache_matches(cache: EmbeddingCache, backbone: ImageBackbone, preprocess: SamPreprocess) -> None:
    """Refuse a cache that another encoder, other weights or other preprocessing built, or an encoder that trains."""
    training = [name for name, tensor in backbone.encode_tensors().items() if tensor.requires_grad]
    if training:
        raise EmbeddingCacheError(
            f"data.embedding_cache {cache.folder} is set but the encoder it stands for trains ({training[0]} and "
            f"{len(training) - 1} more require grad): cached features would be stale after one step; freeze it "
            "(model.trainable.image_encoder=false, and mask_decoder=false where the name is in the decoder, as SAM-2's "
            "skip projections are) or drop the cache"
        )
    wanted = encoder_identity(backbone, preprocess)
    if cache.identity != wanted:
        differences = "; ".join(_differences(cache.identity, wanted))
        raise EmbeddingCacheError(
            f"embedding cache {cache.folder} was built for another encoder or preprocessing ({differences}).\n"
            f"  cache identity: {json.dumps(cache.identity)}\n  run identity:   {json.dumps(wanted)}\n"
            "Rebuild it with `evf cache build` for this config, or point data.embedding_cache elsewhere."
        )


def features_from_cache(maps: list[Tensor]) -> ImageFeatures:
    """A batch's cached maps in build order (embedding first, then the high-res levels) as ImageFeatures."""
    return ImageFeatures(maps[0], list(maps[1:]))


@dataclass(frozen=True)
class CacheBuildSummary:
    """What one rank's build wrote: where, how many images it encoded, and how many it left to other ranks."""

    part: Path
    encoded: int
    other_ranks: int
    duplicates: int


def build_embedding_cache(
    backbone: ImageBackbone,
    preprocess: SamPreprocess,
    readers: Sequence[SampleReader],
    output: Path,
    dtype: StorageDtype = "bfloat16",
    batch_size: int = 8,
    rank: int = 0,
    world_size: int = 1,
    device: str | torch.device = "cpu",
) -> CacheBuildSummary:
    """Encode every distinct image of `readers` once, `batch_size` at a time, into rank `rank`'s shard.

    Images are split between ranks by content key, so ranks agree on who encodes what without talking, and an
    image shared by several sources (RefCOCO, RefCOCO+ and RefCOCOg share COCO images) is encoded once.
    """
    backbone = backbone.eval().to(device)
    writer = EmbeddingCacheWriter(output, encoder_identity(backbone, preprocess), dtype, rank, world_size)
    seen: set[str] = set()
    keys: list[str] = []
    pixels: list[Tensor] = []
    encoded = other_ranks = duplicates = 0

    def flush() -> None:
        with torch.inference_mode():
            features = backbone.encode(torch.stack(pixels).to(device))
        writer.add(keys, [features.embedding, *features.high_res])
        keys.clear()
        pixels.clear()

    for reader in readers:
        for index in range(len(reader)):
            image = reader.load(index, [0]).image
            key = image_key(image)
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            if int(key, 16) % world_size != rank:
                other_ranks += 1
                continue
            keys.append(key)
            pixels.append(preprocess(image)[0])
            encoded += 1
            if len(keys) == batch_size:
                flush()
    if keys:
        flush()
    return CacheBuildSummary(writer.close(), encoded, other_ranks, duplicates)
