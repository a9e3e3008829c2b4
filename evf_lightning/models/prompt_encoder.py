"""BEiT-3 as EVF's prompt encoder: (small image, token ids, attention mask) -> one feature per expression.

Fusion timing is a parameter, not a fork (the paper's Table 4 rows reuse the very same weights):

* `text`: the language expert alone reads the expression (the "BEiT-3 text" row);
* `late`: image and text are each encoded alone and their [CLS] features concatenated (width 2d);
* `early`: one joint pass; `cross_modal_layers=(i, j)` lets the modalities see each other only in layers
  i..j-1 (None: every layer, as the released models).

Which output feature prompts SAM is a parameter too (Table 12): the image [CLS] (released models), the
text [CLS], the mean of the image patch tokens, or the concatenation of text and image [CLS].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from evf_lightning.models.beit3 import Beit3Config, Beit3Encoder

Fusion = Literal["text", "late", "early"]
PromptToken = Literal["image_cls", "text_cls", "image_mean", "concat_cls"]

# The feature each fusion reads when `prompt_token` is not given, and the ones it can produce at all:
# without image tokens there is no image feature; late fusion exists to concatenate the two modalities.
DEFAULT_TOKEN: dict[str, str] = {"text": "text_cls", "late": "concat_cls", "early": "image_cls"}
ALLOWED_TOKENS: dict[str, tuple[str, ...]] = {
    "text": ("text_cls",),
    "late": ("concat_cls",),
    "early": ("image_cls", "text_cls", "image_mean", "concat_cls"),
}


@dataclass(frozen=True)
class Beit3PromptConfig:
    """BEiT-3 sizes, when the modalities fuse, and which token prompts SAM (None: the fusion's own default)."""

    beit3: Beit3Config = field(default_factory=Beit3Config.large)
    fusion: Fusion = "early"
    cross_modal_layers: tuple[int, int] | None = None
    prompt_token: PromptToken | None = None
    kind: Literal["beit3"] = "beit3"

    def __post_init__(self) -> None:
        if self.fusion not in ALLOWED_TOKENS:
            raise ValueError(f"prompt_encoder.fusion {self.fusion!r} is not one of {list(ALLOWED_TOKENS)}")
        if self.prompt_token is not None and self.prompt_token not in ALLOWED_TOKENS[self.fusion]:
            raise ValueError(
                f"prompt_encoder.prompt_token {self.prompt_token!r} is impossible with fusion {self.fusion!r}; "
                f"choose one of {list(ALLOWED_TOKENS[self.fusion])}"
            )
        if self.cross_modal_layers is not None:
            if self.fusion != "early":
                raise ValueError(
                    f"prompt_encoder.cross_modal_layers {self.cross_modal_layers} needs fusion 'early', "
                    f"not {self.fusion!r}"
                )
            first, last = self.cross_modal_layers
            if not 0 <= first <= last <= self.beit3.depth:
                raise ValueError(
                    f"prompt_encoder.cross_modal_layers {self.cross_modal_layers} must satisfy "
                    f"0 <= i <= j <= depth {self.beit3.depth}"
                )

    @property
    def token(self) -> str:
        return self.prompt_token or DEFAULT_TOKEN[self.fusion]

    @property
    def vocab_size(self) -> int:
        return self.beit3.vocab_size

    @property
    def image_size(self) -> int:
        return self.beit3.img_size


class Beit3PromptEncoder(nn.Module):
    """Returns the configured prompt feature [N, width] of each (image, expression) pair."""

    def __init__(self, config: Beit3PromptConfig) -> None:
        super().__init__()
        self.config = config
        self.beit3 = Beit3Encoder(config.beit3)

    @property
    def width(self) -> int:
        """The projector's input width: twice the model width where two [CLS] features are concatenated."""
        return self.config.beit3.embed_dim * (2 if self.config.token == "concat_cls" else 1)

    def forward(self, pixels: Tensor, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        padding = ~attention_mask.bool()
        fusion = self.config.fusion
        if fusion == "text":
            return self.beit3(None, input_ids, padding)[:, 0]
        if fusion == "late":
            image_cls = self.beit3(pixels, None)[:, 0]
            text_cls = self.beit3(None, input_ids, padding)[:, 0]
            return torch.cat([text_cls, image_cls], dim=-1)
        hidden = self.beit3(pixels, input_ids, padding, cross_modal_layers=self.config.cross_modal_layers)
        return self._select(hidden, self.beit3.num_vision_tokens)

    def _select(self, hidden: Tensor, text_start: int) -> Tensor:
        """The configured token of a joint sequence: vision tokens [0, text_start), then text."""
        token = self.config.token
        if token == "image_cls":
            return hidden[:, 0]
        if token == "text_cls":
            return hidden[:, text_start]
        if token == "image_mean":
            return hidden[:, 1:text_start].mean(dim=1)
        return torch.cat([hidden[:, text_start], hidden[:, 0]], dim=-1)
