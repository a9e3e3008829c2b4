"""BEiT-3 as EVF's prompt encoder: (small image, token ids, attention mask) -> one feature per expression.

Fusion timing is a parameter, not a fork: `early` runs image and text through the multiway encoder
jointly (cross-modal attention in `cross_modal_layers`, all layers by default, as the released models);
`text` runs the language expert alone (the paper's "BEiT-3 text" row).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from torch import Tensor, nn

from evf_lightning.models.beit3 import Beit3Config, Beit3Encoder


@dataclass(frozen=True)
class Beit3PromptConfig:
    beit3: Beit3Config = field(default_factory=Beit3Config.large)
    fusion: Literal["early", "text"] = "early"
    cross_modal_layers: tuple[int, int] | None = None


class Beit3PromptEncoder(nn.Module):
    """Returns the image-side [CLS] feature (early fusion) or the text [CLS] feature (text only)."""

    def __init__(self, config: Beit3PromptConfig) -> None:
        super().__init__()
        self.config = config
        self.beit3 = Beit3Encoder(config.beit3)

    @property
    def width(self) -> int:
        return self.config.beit3.embed_dim

    def forward(self, pixels: Tensor, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        padding = ~attention_mask.bool()
        if self.config.fusion == "text":
            return self.beit3(None, input_ids, padding)[:, 0]
        hidden = self.beit3(pixels, input_ids, padding, cross_modal_layers=self.config.cross_modal_layers)
        return hidden[:, 0]
