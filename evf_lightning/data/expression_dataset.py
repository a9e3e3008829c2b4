"""Torch dataset over referring-segmentation readers: one item = one image and its expressions."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from evf_lightning.data.augment import Augmenter
from evf_lightning.data.batch import ExpressionItem
from evf_lightning.data.embedding_cache import EmbeddingCache, image_key
from evf_lightning.data.sample import ReferringSample
from evf_lightning.data.sampler import Draw
from evf_lightning.data.transforms import Beit3Preprocess, SamPreprocess

log = logging.getLogger(__name__)

OnBadSample = Literal["raise", "skip"]
# draw_rng's stream of the augmentation (the prompts' choice has none, as before augmentation existed).
AUGMENT = (1,)


class SampleReader(Protocol):
    """What every on-disk format reader offers (refer, and the multitask formats later)."""

    def __len__(self) -> int: ...

    def num_expressions(self, index: int) -> int: ...

    def load(
        self, index: int, expressions: Sequence[int] | None = None, normalise_text: bool = False
    ) -> ReferringSample: ...


class TextTokenizer(Protocol):
    def __call__(self, text: str, *, return_special_tokens_mask: bool) -> dict[str, list[int]]: ...


class EmptyExpressionError(ValueError):
    """An expression that tokenises to nothing but special tokens gives the model no prompt."""


class ExpressionDataset(Dataset[ExpressionItem | None]):
    """Training reads up to `expressions_per_image` expressions per image, drawn from (seed, epoch,
    index); evaluation (`expressions_per_image=None`) reads every expression of every image.

    `text_override` replaces expression texts (the grounding check's shuffled prompts), keyed by
    (item index, expression index). `augmenter` (training only; off by default, as in the paper) moves image and
    masks together and swaps left/right in the texts of a flipped sample, drawn from (seed, epoch, index, draw).
    With `embedding_cache`, items carry the image's cached encoder features
    looked up by its content key, and the SAM branch's preprocessing (the costly 1024 px resize) is skipped.
    With `cache_in_memory`, each image is read and preprocessed once, with all of its expressions, and kept in
    this process; later draws take their expressions from that item. Without augmentation the items are the
    same either way, so it only saves time: at toy scale reading is a fifth of a CPU training step, at 1024 px
    an image's tensors take 12 MB.
    """

    def __init__(
        self,
        readers: Sequence[SampleReader],
        tokenizer: TextTokenizer,
        sam_preprocess: SamPreprocess,
        beit_preprocess: Beit3Preprocess,
        expressions_per_image: int | None = 3,
        seed: int = 0,
        normalise_text: bool = False,
        on_bad_sample: OnBadSample = "raise",
        text_override: dict[tuple[int, int], str] | None = None,
        augmenter: Augmenter | None = None,
        embedding_cache: EmbeddingCache | None = None,
        cache_in_memory: bool = False,
    ) -> None:
        self.readers = list(readers)
        self.offsets = np.cumsum([0] + [len(r) for r in self.readers])
        self.tokenizer = tokenizer
        self.sam_preprocess = sam_preprocess
        self.beit_preprocess = beit_preprocess
        self.expressions_per_image = expressions_per_image
        self.seed = seed
        self.normalise_text = normalise_text
        self.on_bad_sample = on_bad_sample
        self.text_override = text_override or {}
        self.augmenter = augmenter or Augmenter()
        self.embedding_cache = embedding_cache
        if cache_in_memory and self.augmenter.config.enabled:
            raise ValueError(
                f"an in-memory item cache (data.cache_in_memory) keeps each image as first read, but augmentation "
                f"({self.augmenter.config}) changes it at every draw; turn one of the two off"
            )
        self._memory: dict[int, ExpressionItem] | None = {} if cache_in_memory else None
        self.num_skipped = 0

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, index: int) -> tuple[SampleReader, int]:
        which = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return self.readers[which], index - int(self.offsets[which])

    def chosen_expressions(self, draw: Draw) -> list[int]:
        reader, local = self.locate(draw.index)
        return choose_expressions(reader.num_expressions(local), self.expressions_per_image, self.seed, draw)

    def __getitem__(self, draw: Draw | int) -> ExpressionItem | None:
        draw = draw if isinstance(draw, Draw) else Draw(draw, 0)
        try:
            return self._read(draw)
        except (OSError, ValueError) as error:
            if self.on_bad_sample == "raise":
                raise
            self.num_skipped += 1
            log.warning(
                "skipping sample %d (%d skipped so far in this worker): %s", draw.index, self.num_skipped, error
            )
            return None

    def _read(self, draw: Draw) -> ExpressionItem:
        chosen = self.chosen_expressions(draw)
        if self._memory is None:
            return self._prepare(draw, chosen)
        whole = self._memory.get(draw.index)
        if whole is None:
            reader, local = self.locate(draw.index)
            whole = self._memory[draw.index] = self._prepare(draw, list(range(reader.num_expressions(local))))
        return whole.select(chosen)

    def _prepare(self, draw: Draw, chosen: list[int]) -> ExpressionItem:
        """The item of expressions `chosen` of image `draw.index`: read, augmented, preprocessed, tokenised."""
        index = draw.index
        reader, local = self.locate(index)
        sample = self.augmenter(
            reader.load(local, chosen, normalise_text=self.normalise_text), draw_rng(AUGMENT, self.seed, draw)
        )
        texts = [self.text_override.get((index, j), text) for j, text in zip(chosen, sample.texts, strict=True)]
        cached = None
        if self.embedding_cache is not None:
            cached = self.embedding_cache.features(image_key(sample.image), sample.source)
            sam_pixels, resized_hw = None, self.sam_preprocess.resized_size(*sample.image.shape[:2])
        else:
            sam_pixels, resized_hw = self.sam_preprocess(sample.image)
        return ExpressionItem(
            sam_pixels=sam_pixels,
            beit_pixels=self.beit_preprocess(sample.image),
            token_ids=[tokenize_expression(self.tokenizer, text, sample.source) for text in texts],
            masks=torch.from_numpy(np.ascontiguousarray(sample.masks)),
            resized_hw=resized_hw,
            texts=texts,
            source=sample.source,
            cached_features=cached,
        )


def tokenize_expression(tokenizer: TextTokenizer, text: str, source: str) -> list[int]:
    """Token ids of one expression as the model reads it, with its special tokens; an expression with nothing
    but special tokens gives the model no prompt, and the error names where it came from."""
    encoded = tokenizer(text, return_special_tokens_mask=True)
    if all(encoded["special_tokens_mask"]):
        raise EmptyExpressionError(
            f"expression {text!r} of {source} tokenises to special tokens only (such as <s> </s>); "
            "fix the annotation or run with data.on_bad_sample=skip"
        )
    return encoded["input_ids"]


def choose_expressions(count: int, limit: int | None, seed: int, draw: Draw) -> list[int]:
    """Up to `limit` of `count` expressions without replacement, ascending, from a generator seeded by
    (seed, epoch, index[, draw number]); all of them in order where there are no more than `limit`, as the
    official loaders do."""
    if limit is None or count <= limit:
        return list(range(count))
    rng = draw_rng((), seed, draw)
    return sorted(rng.choice(count, size=limit, replace=False).tolist())


def draw_rng(stream: tuple[int, ...], seed: int, draw: Draw) -> np.random.Generator:
    """The generator of one random choice of one draw: (seed, epoch, index[, draw number]) and nothing else,
    so a draw is the same in any worker or rank; `stream` tells the choices of one draw apart."""
    return np.random.default_rng([*stream, seed, draw.epoch, draw.index] + ([] if draw.draw is None else [draw.draw]))
