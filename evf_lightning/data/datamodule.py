"""LightningDataModule for the refer family: RefCOCO, RefCOCO+, RefCOCOg and RefCLEF splits."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from lightning import LightningDataModule
from torch.utils.data import DataLoader
from transformers import XLMRobertaTokenizer

from evf_lightning.data.batch import collate_expressions
from evf_lightning.data.expression_dataset import ExpressionDataset, OnBadSample
from evf_lightning.data.refer import ReferDataset
from evf_lightning.data.sampler import EpochDrawSampler
from evf_lightning.data.transforms import Beit3Preprocess, SamPreprocess


@dataclass
class ReferSplit:
    """One split of one refer dataset, e.g. refcoco / unc / testA."""

    dataset: str = "refcoco"
    split_by: str = "unc"
    split: str = "train"

    @property
    def name(self) -> str:
        return f"{self.dataset}_{self.split_by}_{self.split}"


class EvfDataModule(LightningDataModule):
    """Reads refer-format data from `root` and tokenises with the tokenizer folder `tokenizer`.

    Preprocessing follows the model (the CLI links `sam_image_size`, `sam_resize` and
    `beit_image_size` to the model config). Training items are images with up to
    `expressions_per_image` expressions; evaluation reads every expression, lower-cased and stripped as
    the official eval does. `shuffle_eval_prompts` permutes expressions across the whole evaluation
    split: the control that shows how much the model relies on the text.
    """

    def __init__(
        self,
        root: str,
        tokenizer: str,
        train: list[ReferSplit] | None = None,
        val: list[ReferSplit] | None = None,
        test: list[ReferSplit] | None = None,
        sam_image_size: int = 1024,
        sam_resize: Literal["longest_pad", "stretch", "longest_then_stretch"] = "longest_pad",
        beit_image_size: int = 224,
        expressions_per_image: int = 3,
        batch_size: int = 16,
        eval_batch_size: int = 8,
        num_workers: int = 4,
        seed: int = 0,
        on_bad_sample: OnBadSample = "raise",
        shuffle_eval_prompts: bool = False,
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.tokenizer_dir = Path(tokenizer)
        self.train_splits = train or []
        self.val_splits = val or []
        self.test_splits = test or []
        self.sam_preprocess = SamPreprocess(size=sam_image_size, resize=sam_resize)
        self.beit_preprocess = Beit3Preprocess(size=beit_image_size)
        self.expressions_per_image = expressions_per_image
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.on_bad_sample = on_bad_sample
        self.shuffle_eval_prompts = shuffle_eval_prompts

    @functools.cached_property
    def tokenizer(self) -> XLMRobertaTokenizer:
        if not (self.tokenizer_dir / "sentencepiece.bpe.model").is_file():
            raise FileNotFoundError(
                f"tokenizer folder {self.tokenizer_dir} has no sentencepiece.bpe.model "
                "(expected the layout of the official checkpoints' tokenizer files)"
            )
        return XLMRobertaTokenizer.from_pretrained(str(self.tokenizer_dir), padding_side="right")

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

    def _dataset(self, splits: list[ReferSplit], training: bool) -> ExpressionDataset:
        if not splits:
            raise ValueError(f"data.{'train' if training else 'val/test'} lists no split to read")
        readers = [ReferDataset(self.root, s.dataset, s.split_by, s.split) for s in splits]
        dataset = ExpressionDataset(
            readers,
            self.tokenizer,
            self.sam_preprocess,
            self.beit_preprocess,
            expressions_per_image=self.expressions_per_image if training else None,
            seed=self.seed,
            normalise_text=not training,
            on_bad_sample=self.on_bad_sample,
        )
        if self.shuffle_eval_prompts and not training:
            dataset.text_override = shuffled_texts(dataset, self.seed)
        return dataset

    def _loader(self, dataset: ExpressionDataset, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=EpochDrawSampler(dataset, shuffle=shuffle, seed=self.seed),
            num_workers=self.num_workers,
            collate_fn=functools.partial(collate_expressions, pad_token_id=self.tokenizer.pad_token_id),
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.batch_size, shuffle=True)

    def val_dataloader(self) -> list[DataLoader]:
        return [self._loader(d, self.eval_batch_size, shuffle=False) for d in self.val_sets]

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(d, self.eval_batch_size, shuffle=False) for d in self.test_sets]


def shuffled_texts(dataset: ExpressionDataset, seed: int) -> dict[tuple[int, int], str]:
    """Every expression of the split gets the text of another, drawn by a seeded permutation."""
    keys, texts = [], []
    for index in range(len(dataset)):
        reader, local = dataset.locate(index)
        sample_texts = reader.texts(local, normalise_text=dataset.normalise_text)
        keys.extend((index, j) for j in range(len(sample_texts)))
        texts.extend(sample_texts)
    order = np.random.default_rng(seed).permutation(len(texts))
    return {key: texts[i] for key, i in zip(keys, order, strict=True)}
