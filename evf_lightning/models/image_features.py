"""What an image backbone hands to its mask decoder."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class ImageFeatures:
    """The frozen-encoder output for a batch of images.

    `embedding` is the [B, C, h, w] map the mask decoder attends to; `high_res` holds any finer maps a
    backbone passes as skip connections (SAM-2), coarsest last. Only these tensors depend on the image,
    which is what makes them cacheable across epochs and runs.
    """

    embedding: Tensor
    high_res: list[Tensor] = field(default_factory=list)

    def __getitem__(self, index: Tensor | slice) -> ImageFeatures:
        return ImageFeatures(self.embedding[index], [level[index] for level in self.high_res])

    def to(self, *args: object, **kwargs: object) -> ImageFeatures:
        return ImageFeatures(self.embedding.to(*args, **kwargs), [level.to(*args, **kwargs) for level in self.high_res])
