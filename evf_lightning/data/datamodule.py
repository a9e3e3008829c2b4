"""LightningDataModule over data sources of every kind: refer splits, the multitask formats, mixed by ratio."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

import numpy as np
import torch.distributed as dist
from lightning import LightningDataModule
from torch.utils.data import DataLoader, DistributedSampler
from transformers import PreTrainedTokenizerBase

from evf_lightning.data.augment import AugmentConfig, Augmenter
from evf_lightning.data.batch import collate_expressions
from evf_lightning.data.embedding_cache import EmbeddingCache
from evf_lightning.data.expression_dataset import ExpressionDataset, OnBadSample, SampleReader
from evf_lightning.data.mixture import MixtureSampler
from evf_lightning.data.resumable_loader import ResumableLoader
from evf_lightning.data.sampler import EpochDrawSampler
from evf_lightning.data.sources import Source
from evf_lightning.data.tokenizer import load_tokenizer
from evf_lightning.data.transforms import Beit3Preprocess, SamPreprocess


class EvfDataModule(LightningDataModule):
    """Reads the sources under `root` (sources.py: refer splits and the multitask formats) and tokenises
    with the tokenizer folder `tokenizer` (the prompt encoder's own: BEiT-3's, CLIP's, an LLM's).

    Preprocessing follows the model (the CLI links `sam_image_size`, `sam_resize` and
    `beit_image_size` to the model config). Training items are images with up to
    `expressions_per_image` expressions; evaluation reads every expression, lower-cased and stripped as
    the official eval does. `shuffle_eval_prompts` permutes expressions across the whole evaluation
    split: the control that shows how much the model relies on the text.

    Several train sources, a `ratio` on one, or `samples_per_epoch` make training a mixture (mixture.py):
    each draw picks a source with the normalised ratios (unset counts as 1), then one of its images; an
    epoch is `samples_per_epoch` draws (default: the train images of all sources together). Otherwise an
    epoch reads each image once in a seeded shuffle.

    `augment` varies training samples (augment.py); every field at its default, the paper's setting, is none.
    `embedding_cache` is a folder written by `evf cache build`: every split then reads the frozen image
    encoder's features from it instead of preprocessing SAM pixels (the model checks that the cache was built
    by its own encoder and preprocessing before any step runs).
    `cache_in_memory` keeps every image of every split, preprocessed, in the reading process after its first
    read (expression_dataset.py); it refuses augmentation, and suits data that fits in memory.
    """

    def __init__(
        self,
        root: str,
        tokenizer: str,
        train: list[Source] | None = None,
        val: list[Source] | None = None,
        test: list[Source] | None = None,
        sam_image_size: int = 1024,
        sam_resize: Literal["longest_pad", "stretch", "longest_then_stretch"] = "longest_pad",
        beit_image_size: int = 224,
        expressions_per_image: int = 3,
        samples_per_epoch: int | None = None,
        batch_size: int = 16,
        eval_batch_size: int = 8,
        num_workers: int = 4,
        seed: int = 0,
        on_bad_sample: OnBadSample = "raise",
        shuffle_eval_prompts: bool = False,
        augment: AugmentConfig | None = None,
        embedding_cache: str | None = None,
        cache_in_memory: bool = False,
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.tokenizer_dir = Path(tokenizer)
        self.train_splits = train or []
        self.val_splits = val or []
        self.test_splits = test or []
        for split in self.val_splits + self.test_splits:
            if split.ratio is not None:
                raise ValueError(f"evaluation source {split.name} has a ratio; ratios weigh train sources only")
        self.sam_preprocess = SamPreprocess(size=sam_image_size, resize=sam_resize)
        self.beit_preprocess = Beit3Preprocess(size=beit_image_size)
        self.expressions_per_image = expressions_per_image
        self.samples_per_epoch = samples_per_epoch
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.on_bad_sample = on_bad_sample
        self.shuffle_eval_prompts = shuffle_eval_prompts
        self.augment = augment or AugmentConfig.paper()
        self.embedding_cache_dir = None if embedding_cache is None else Path(embedding_cache)
        self.cache_in_memory = cache_in_memory
        if self.embedding_cache_dir is not None and self.augment != AugmentConfig.paper():
            raise ValueError(
                f"data.embedding_cache {self.embedding_cache_dir} holds features of the images as they are on disk, "
                f"but data.augment={self.augment} changes them; turn one of the two off"
            )

    @functools.cached_property
    def embedding_cache(self) -> EmbeddingCache | None:
        """The opened cache (sizes and checksums checked once, here), or None to encode on the fly."""
        return None if self.embedding_cache_dir is None else EmbeddingCache(self.embedding_cache_dir)

    @functools.cached_property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        """The prompt encoder's tokenizer (tokenizer.py: BEiT-3's sentencepiece folder or any transformers one)."""
        return load_tokenizer(self.tokenizer_dir)

    @property
    def val_names(self) -> list[str]:
        return [split.name for split in self.val_splits]

    @property
    def test_names(self) -> list[str]:
        return [split.name for split in self.test_splits]

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.train_set = self._dataset(self.train_splits, training=True)
        if stage in ("fit", "validate"):
            self.val_sets = [self._dataset([split], training=False) for split in self.val_splits]
        if stage == "test":
            self.test_sets = [self._dataset([split], training=False) for split in self.test_splits]

    @property
    def mixes(self) -> bool:
        """Whether training draws from a ratio mixture rather than shuffling one source's images."""
        return (
            len(self.train_splits) > 1
            or any(s.ratio is not None for s in self.train_splits)
            or self.samples_per_epoch is not None
        )

    def readers(self, splits: list[Source]) -> list[SampleReader]:
        return [split.reader(self.root) for split in splits]

    def train_sampler(
        self, sizes: list[int], num_replicas: int = 1, rank: int = 0, samples_per_epoch: int | None = None
    ) -> DistributedSampler:
        """The mixture sampler or the seeded shuffle (see the class docstring) over train sources of `sizes`
        images, for `rank` of `num_replicas` (the shuffle takes torch.distributed's, as before)."""
        if not self.mixes:
            return EpochDrawSampler(range(sum(sizes)), shuffle=True, seed=self.seed)
        return MixtureSampler(
            sizes,
            [1.0 if s.ratio is None else s.ratio for s in self.train_splits],
            samples_per_epoch or self.samples_per_epoch or sum(sizes),
            seed=self.seed,
            num_replicas=num_replicas,
            rank=rank,
        )

    def _world(self) -> tuple[int, int]:
        """(world size, global rank): the trainer's where one is attached, else torch.distributed's."""
        if self.trainer is not None:
            return self.trainer.world_size, self.trainer.global_rank
        if dist.is_available() and dist.is_initialized():
            return dist.get_world_size(), dist.get_rank()
        return 1, 0

    def _dataset(self, splits: list[Source], training: bool) -> ExpressionDataset:
        if not splits:
            raise ValueError(f"data.{'train' if training else 'val/test'} lists no split to read")
        readers = self.readers(splits)
        normalise_text = not training  # evaluation reads expressions as the official eval does
        shuffle = self.shuffle_eval_prompts and not training
        return ExpressionDataset(
            readers,
            self.tokenizer,
            self.sam_preprocess,
            self.beit_preprocess,
            expressions_per_image=self.expressions_per_image if training else None,
            seed=self.seed,
            normalise_text=normalise_text,
            on_bad_sample=self.on_bad_sample,
            augmenter=Augmenter(self.augment) if training else None,
            embedding_cache=self.embedding_cache,
            cache_in_memory=self.cache_in_memory,
            text_override=shuffled_texts(readers, self.seed, normalise_text) if shuffle else None,
        )

    def _loader(self, dataset: ExpressionDataset, batch_size: int, sampler: DistributedSampler) -> DataLoader:
        """A loader whose position in the epoch is saved with the checkpoint (resumable_loader.py)."""
        return ResumableLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=functools.partial(collate_expressions, pad_token_id=self.tokenizer.pad_token_id),
            persistent_workers=self.num_workers > 0,
        )

    def _eval_loader(self, dataset: ExpressionDataset) -> DataLoader:
        return self._loader(dataset, self.eval_batch_size, EpochDrawSampler(dataset, shuffle=False, seed=self.seed))

    def train_dataloader(self) -> DataLoader:
        sizes = [len(reader) for reader in self.train_set.readers]
        return self._loader(self.train_set, self.batch_size, self.train_sampler(sizes, *self._world()))

    def val_dataloader(self) -> list[DataLoader]:
        return [self._eval_loader(d) for d in self.val_sets]

    def test_dataloader(self) -> list[DataLoader]:
        return [self._eval_loader(d) for d in self.test_sets]


def shuffled_texts(readers: list[SampleReader], seed: int, normalise_text: bool) -> dict[tuple[int, int], str]:
    """Every expression of the images of `readers` (numbered on through them, as the dataset over them numbers
    its images) gets the text of another, drawn by a seeded permutation. Given to the dataset when it is built,
    so that no item it keeps in memory was read with the true texts."""
    keys, texts = [], []
    index = 0
    for reader in readers:
        for local in range(len(reader)):
            sample_texts = reader.texts(local, normalise_text=normalise_text)
            keys.extend((index, j) for j in range(len(sample_texts)))
            texts.extend(sample_texts)
            index += 1
    order = np.random.default_rng(seed).permutation(len(texts))
    return {key: texts[i] for key, i in zip(keys, order, strict=True)}
