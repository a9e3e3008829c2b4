"""The frozen-encoder embedding store: tensors by image-content key, in memory-mapped shards with manifests.

The image encoder is frozen in every published recipe and costs most of the compute, while its output depends
only on the image and the encoder. `evf cache build` writes it once; every epoch and every ablation run over the
same data then reads it back. This file knows nothing of models: the writer takes tensors, the reader returns
tensors, and the backbone `identity` is an opaque JSON object that training/ computes and compares.

Layout of a cache folder: one shard per build rank, `shard-RRRRR-of-WWWWW.bin`, a raw row-major array
[images, row] of 16-bit floats where a row is every feature map of one image flattened one after the other;
beside it `part-RRRRR-of-WWWWW.json` with the rank's keys, the map shapes, the identity, the shard's size and
its SHA-256. A part manifest is written last and atomically, so a crashed rank leaves no part, and a cache is
complete only when all W parts are there. Size and checksum are checked when a cache is opened: a truncated
or altered shard is refused, never read.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

FORMAT = "evf-embedding-cache/1"
StorageDtype = Literal["bfloat16", "float16"]
_TORCH_DTYPES: dict[str, torch.dtype] = {"bfloat16": torch.bfloat16, "float16": torch.float16}
_HASH_CHUNK = 1 << 24


class EmbeddingCacheError(ValueError):
    """A cache that is incomplete, damaged, or was built for something else."""


def image_key(image: np.ndarray) -> str:
    """Content key of a decoded image: a hash of its pixels and shape, so renamed or re-encoded files that
    decode to the same pixels share one entry, and any pixel change (an edit, a flip) is a different key."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr((image.shape, str(image.dtype))).encode())
    digest.update(np.ascontiguousarray(image).data)
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _shard_names(rank: int, world_size: int) -> tuple[str, str]:
    tail = f"{rank:05d}-of-{world_size:05d}"
    return f"shard-{tail}.bin", f"part-{tail}.json"


@dataclass(frozen=True)
class MapLayout:
    """One feature map of every image: its name (embedding, high_res.0, ...) and per-image shape."""

    name: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape))


class EmbeddingCacheWriter:
    """Writes rank `rank` of `world_size`'s shard, a batch at a time, then its part manifest on `close`."""

    def __init__(
        self, folder: Path, identity: dict[str, Any], dtype: StorageDtype, rank: int = 0, world_size: int = 1
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size}")
        if dtype not in _TORCH_DTYPES:
            raise ValueError(f"cache dtype must be one of {sorted(_TORCH_DTYPES)}, not {dtype!r}")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.identity, self.dtype, self.rank, self.world_size = identity, dtype, rank, world_size
        shard_name, self.part_name = _shard_names(rank, world_size)
        self.shard_path = self.folder / shard_name
        (self.folder / self.part_name).unlink(missing_ok=True)  # a rebuilt rank is incomplete until closed
        self._handle = self.shard_path.open("wb")
        self._digest = hashlib.sha256()
        self._bytes = 0
        self.keys: list[str] = []
        self.layout: list[MapLayout] | None = None

    def add(self, keys: list[str], maps: list[Tensor]) -> None:
        """Append images `keys`; `maps` are their feature maps, each [len(keys), ...], in a fixed order."""
        layout = [MapLayout(f"map.{i}", tuple(m.shape[1:])) for i, m in enumerate(maps)]
        if self.layout is None:
            self.layout = layout
        elif [m.shape for m in layout] != [m.shape for m in self.layout]:
            raise EmbeddingCacheError(
                f"feature shapes changed within one build: {[m.shape for m in layout]} after "
                f"{[m.shape for m in self.layout]}; every image must reach the encoder at the same size"
            )
        if any(m.shape[0] != len(keys) for m in maps):
            raise ValueError(f"{len(keys)} keys for feature maps of batch sizes {[m.shape[0] for m in maps]}")
        dtype = _TORCH_DTYPES[self.dtype]
        rows = torch.cat([m.detach().to("cpu", dtype).reshape(len(keys), -1) for m in maps], dim=1)
        data = rows.contiguous().view(torch.int16).numpy().tobytes()
        self._handle.write(data)
        self._digest.update(data)
        self._bytes += len(data)
        self.keys.extend(keys)

    def close(self) -> Path:
        """Flush the shard and write the part manifest that makes this rank's shard part of the cache."""
        self._handle.close()
        manifest = {
            "format": FORMAT,
            "identity": self.identity,
            "dtype": self.dtype,
            "maps": [{"name": m.name, "shape": list(m.shape)} for m in self.layout or []],
            "rank": self.rank,
            "world_size": self.world_size,
            "shard": self.shard_path.name,
            "bytes": self._bytes,
            "sha256": self._digest.hexdigest(),
            "keys": self.keys,
        }
        part = self.folder / self.part_name
        temporary = part.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(manifest))
        os.replace(temporary, part)
        return part


class EmbeddingCache:
    """A complete cache folder, read-only: `features(key)` is an image's feature maps, memory-mapped.

    Opening checks that every part of the build is there with one identity and layout, and each shard's size
    and (with `verify_checksums`) its SHA-256. Shards are mapped lazily in each process, so the object can be
    sent to loader workers.
    """

    def __init__(self, folder: str | Path, verify_checksums: bool = True) -> None:
        self.folder = Path(folder)
        parts = self._read_parts()
        first = parts[0]
        self.identity: dict[str, Any] = first["identity"]
        self.dtype: StorageDtype = first["dtype"]
        self.layout = [MapLayout(m["name"], tuple(m["shape"])) for m in first["maps"]]
        self.row = sum(m.numel for m in self.layout)
        self._shards: list[Path] = []
        self._where: dict[str, tuple[int, int]] = {}
        for part in parts:
            for field in ("identity", "dtype", "maps"):
                if part[field] != first[field]:
                    raise EmbeddingCacheError(
                        f"{self.folder}: rank {part['rank']}'s {field} {part[field]} differs from rank 0's "
                        f"{first[field]}; the ranks were built with different settings, rebuild the cache"
                    )
            shard = self._check_shard(part, verify_checksums)
            for row, key in enumerate(part["keys"]):
                self._where.setdefault(key, (len(self._shards), row))
            self._shards.append(shard)
        self._maps: list[np.memmap | None] = [None] * len(self._shards)

    def _read_parts(self) -> list[dict[str, Any]]:
        if not self.folder.is_dir():
            raise FileNotFoundError(f"embedding cache {self.folder} does not exist; build it with `evf cache build`")
        parts = [json.loads(p.read_text()) for p in sorted(self.folder.glob("part-*-of-*.json"))]
        if not parts:
            raise EmbeddingCacheError(f"{self.folder} holds no part-*.json manifest: not a finished embedding cache")
        bad_format = [p.get("format") for p in parts if p.get("format") != FORMAT]
        if bad_format:
            raise EmbeddingCacheError(f"{self.folder}: manifest format {bad_format[0]!r}, expected {FORMAT!r}")
        world = {p["world_size"] for p in parts}
        ranks = sorted(p["rank"] for p in parts)
        if len(world) != 1 or ranks != list(range(next(iter(world)))):
            raise EmbeddingCacheError(
                f"{self.folder}: incomplete build, parts of ranks {ranks} for world sizes {sorted(world)}; "
                "every rank must finish (rerun the missing ranks of `evf cache build`)"
            )
        return parts

    def _check_shard(self, part: dict[str, Any], verify_checksums: bool) -> Path:
        shard = self.folder / part["shard"]
        expected = len(part["keys"]) * self.row * 2
        if part["bytes"] != expected:
            raise EmbeddingCacheError(f"{shard}: manifest says {part['bytes']} bytes, its keys need {expected}")
        actual = shard.stat().st_size if shard.is_file() else None
        if actual != expected:
            raise EmbeddingCacheError(
                f"{shard} is {actual} bytes, its manifest says {expected}: truncated or replaced; rebuild rank "
                f"{part['rank']} of the cache"
            )
        if verify_checksums and _file_sha256(shard) != part["sha256"]:
            raise EmbeddingCacheError(f"{shard}: SHA-256 differs from its manifest; the shard is damaged, rebuild it")
        return shard

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: str) -> bool:
        return key in self._where

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_maps": [None] * len(self._shards)}

    def features(self, key: str, source: str = "") -> list[Tensor]:
        """The feature maps of the image with content key `key` (fp32 copies); `source` names it in errors."""
        if key not in self._where:
            raise EmbeddingCacheError(
                f"image {source or key} (content key {key}) is not in the embedding cache {self.folder}: the data "
                "changed since the build, or an augmentation altered the pixels; rebuild, or run without the cache"
            )
        shard, row = self._where[key]
        if self._maps[shard] is None:
            rows = self._shards[shard].stat().st_size // (2 * self.row)
            self._maps[shard] = np.memmap(self._shards[shard], dtype=np.int16, mode="r", shape=(rows, self.row))
        values = torch.from_numpy(np.array(self._maps[shard][row])).view(_TORCH_DTYPES[self.dtype]).float()
        out, start = [], 0
        for layout in self.layout:
            out.append(values[start : start + layout.numel].reshape(layout.shape))
            start += layout.numel
        return out
