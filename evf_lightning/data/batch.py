"""A batch of images with their expressions, and the collate function that builds it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor


@dataclass
class ExpressionItem:
    """One image, preprocessed for both branches, with its expressions tokenised.

    With an embedding cache the SAM branch is not preprocessed at all: `sam_pixels` is None and
    `cached_features` holds the frozen encoder's feature maps for the image instead.
    """

    sam_pixels: Tensor | None
    beit_pixels: Tensor
    token_ids: list[list[int]]
    masks: Tensor
    resized_hw: tuple[int, int]
    texts: list[str]
    source: str
    cached_features: list[Tensor] | None = None

    def select(self, expressions: Sequence[int]) -> ExpressionItem:
        """The same image with only `expressions` (indices into this item's), in the order given."""
        chosen = list(expressions)
        return replace(
            self,
            token_ids=[self.token_ids[j] for j in chosen],
            masks=self.masks[chosen],
            texts=[self.texts[j] for j in chosen],
        )


@dataclass
class ReferBatch:
    """B images and N >= B expressions; `image_index[n]` names expression n's image.

    Images are encoded once and shared by all their expressions (the official `offset` vector, as an
    index). Masks stay at each image's original resolution, where the loss and metrics are computed.
    From an embedding cache, `cached_features` (each map [B, ...]) replaces `sam_pixels`.
    """

    sam_pixels: Tensor | None
    beit_pixels: Tensor
    input_ids: Tensor
    attention_mask: Tensor
    image_index: Tensor
    masks: list[Tensor]
    resized_hw: list[tuple[int, int]]
    texts: list[str]
    sources: list[str]
    num_skipped: int = 0
    cached_features: list[Tensor] | None = None

    @property
    def num_images(self) -> int:
        return len(self.masks)

    @property
    def num_expressions(self) -> int:
        return self.input_ids.shape[0]


def collate_expressions(items: list[ExpressionItem | None], pad_token_id: int = 1) -> ReferBatch:
    """Stack images and right-pad token ids; `None` items are samples skipped as unreadable.

    The attention mask comes from each sequence's length, not from comparing ids with the pad id: a causal LM's
    tokenizer pads with its EOS token, which may also end a real sequence.
    """
    kept = [item for item in items if item is not None]
    if not kept:
        raise RuntimeError(f"every sample of a batch of {len(items)} was skipped as unreadable; see the log")
    input_ids, attention_mask = pad_token_ids([ids for item in kept for ids in item.token_ids], pad_token_id)
    image_index = torch.cat([torch.full((len(item.token_ids),), i, dtype=torch.long) for i, item in enumerate(kept)])
    cached = None
    if kept[0].cached_features is not None:
        cached = [torch.stack(maps) for maps in zip(*(item.cached_features for item in kept), strict=True)]
    return ReferBatch(
        sam_pixels=None if cached is not None else torch.stack([item.sam_pixels for item in kept]),
        beit_pixels=torch.stack([item.beit_pixels for item in kept]),
        input_ids=input_ids,
        attention_mask=attention_mask,
        image_index=image_index,
        masks=[item.masks for item in kept],
        resized_hw=[item.resized_hw for item in kept],
        texts=[text for item in kept for text in item.texts],
        sources=[item.source for item in kept],
        num_skipped=len(items) - len(kept),
        cached_features=cached,
    )


def pad_token_ids(token_ids: list[list[int]], pad_token_id: int) -> tuple[Tensor, Tensor]:
    """Right-padded ids [N, L] and their attention mask [N, L] (True on tokens), L the longest sequence."""
    length = max(len(ids) for ids in token_ids)
    input_ids = torch.full((len(token_ids), length), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(token_ids), length), dtype=torch.bool)
    for row, ids in enumerate(token_ids):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = True
    return input_ids, attention_mask
