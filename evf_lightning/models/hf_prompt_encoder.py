"""The paper's alternative prompt encoders (Tables 2, 4, 5) from transformers, behind BEiT-3's interface.

(small image, token ids, attention mask) -> one feature per expression, as `Beit3PromptEncoder`:

* `HfTextPromptConfig`: a text encoder (BERT, RoBERTa) or a causal language model's last hidden state
  (GPT-2, Llama: the LLM rows) reads the expression alone;
* `ClipPromptConfig`: CLIP text alone, or CLIP text and image encoded alone and concatenated (late fusion);
* `ViltPromptConfig`: ViLT, one transformer over text and image patches (early fusion), its joint [CLS].

Each is built at random from a transformers config object made from the typed sizes here; real weights are
loaded from a local folder by `hub.pretrained` (this floor does no file I/O). The images the data module
makes are normalised the BEiT-3 way (mean = std = 0.5); CLIP's vision tower gets them re-normalised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import transformers
from torch import Tensor, nn

# transformers classes and the names each gives to the generic sizes below.
_TEXT_ARCHITECTURES: dict[str, tuple[str, str, dict[str, str]]] = {
    "bert": ("BertConfig", "BertModel", {}),
    "roberta": ("RobertaConfig", "RobertaModel", {}),
    "llama": ("LlamaConfig", "LlamaModel", {}),
    "gpt2": (
        "GPT2Config",
        "GPT2Model",
        {
            "hidden_size": "n_embd",
            "num_hidden_layers": "n_layer",
            "num_attention_heads": "n_head",
            "intermediate_size": "n_inner",
            "max_position_embeddings": "n_positions",
        },
    ),
}
CAUSAL_LMS = ("gpt2", "llama")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class TransformerSizes:
    """The sizes every transformers architecture here shares (tiny by default: tests and CPU runs)."""

    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    intermediate_size: int = 128
    vocab_size: int = 256
    max_position_embeddings: int = 64

    def as_kwargs(self, renames: dict[str, str] | None = None) -> dict[str, Any]:
        renames = renames or {}
        return {renames.get(name, name): value for name, value in self.__dict__.items()}


def last_real_token(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """The hidden state at each sequence's last unpadded position (right padding): EOS for CLIP, the LLM summary."""
    last = attention_mask.long().sum(dim=1).clamp(min=1) - 1
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


@dataclass(frozen=True)
class HfTextPromptConfig:
    """A text encoder or causal LM from transformers; `pooling` None = first token ([CLS]) or, for LMs, the last."""

    kind: Literal["hf_text"] = "hf_text"
    architecture: Literal["bert", "roberta", "gpt2", "llama"] = "bert"
    sizes: TransformerSizes = field(default_factory=TransformerSizes)
    pooling: Literal["first", "last", "mean"] | None = None

    @property
    def vocab_size(self) -> int:
        return self.sizes.vocab_size

    @property
    def image_size(self) -> int:
        """The images are not read; the data module still makes them, as small as a patch."""
        return 16


class HfTextPromptEncoder(nn.Module):
    def __init__(self, config: HfTextPromptConfig) -> None:
        super().__init__()
        self.config = config
        config_class, model_class, renames = _TEXT_ARCHITECTURES[config.architecture]
        kwargs = config.sizes.as_kwargs(renames)
        if config.architecture == "roberta":  # RoBERTa counts positions from padding_idx + 1
            kwargs["max_position_embeddings"] += 2
        hf_config = getattr(transformers, config_class)(**kwargs)
        self.hf = getattr(transformers, model_class)(hf_config)
        self.pooling = config.pooling or ("last" if config.architecture in CAUSAL_LMS else "first")

    @property
    def width(self) -> int:
        return self.config.sizes.hidden_size

    def forward(self, pixels: Tensor, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        hidden = self.hf(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "first":
            return hidden[:, 0]
        if self.pooling == "last":
            return last_real_token(hidden, attention_mask)
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)


@dataclass(frozen=True)
class VisionSizes:
    image_size: int = 32
    patch_size: int = 8
    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    intermediate_size: int = 128


@dataclass(frozen=True)
class ClipPromptConfig:
    """CLIP's text tower alone (`text`), or text and image towers concatenated (`late`: the "+img" rows)."""

    kind: Literal["clip"] = "clip"
    fusion: Literal["text", "late"] = "text"
    text: TransformerSizes = field(default_factory=TransformerSizes)
    vision: VisionSizes = field(default_factory=VisionSizes)

    @property
    def vocab_size(self) -> int:
        return self.text.vocab_size

    @property
    def image_size(self) -> int:
        return self.vision.image_size


class ClipPromptEncoder(nn.Module):
    def __init__(self, config: ClipPromptConfig) -> None:
        super().__init__()
        self.config = config
        self.text = transformers.CLIPTextModel(transformers.CLIPTextConfig(**config.text.as_kwargs()))
        self.vision = None
        if config.fusion == "late":
            self.vision = transformers.CLIPVisionModel(transformers.CLIPVisionConfig(**config.vision.__dict__))
        # BEiT-3-normalised pixels (x - 0.5) / 0.5 -> CLIP-normalised: x * scale + shift per channel.
        std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
        self.register_buffer("scale", 0.5 / std, persistent=False)
        self.register_buffer("shift", (0.5 - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / std, persistent=False)

    @property
    def width(self) -> int:
        late = self.config.fusion == "late"
        return self.config.text.hidden_size + (self.config.vision.hidden_size if late else 0)

    def forward(self, pixels: Tensor, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        text = self.text(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        text_feature = last_real_token(text, attention_mask)  # CLIP's pooled EOS token
        if self.vision is None:
            return text_feature
        image = self.vision(pixel_values=pixels * self.scale + self.shift).pooler_output
        return torch.cat([text_feature, image], dim=-1)


@dataclass(frozen=True)
class ViltPromptConfig:
    """ViLT: text tokens and image patches in one transformer from the first layer; its joint [CLS]."""

    kind: Literal["vilt"] = "vilt"
    sizes: TransformerSizes = field(default_factory=TransformerSizes)
    image_size: int = 32
    patch_size: int = 8

    @property
    def vocab_size(self) -> int:
        return self.sizes.vocab_size


class ViltPromptEncoder(nn.Module):
    def __init__(self, config: ViltPromptConfig) -> None:
        super().__init__()
        self.config = config
        hf_config = transformers.ViltConfig(
            **config.sizes.as_kwargs(),
            image_size=config.image_size,
            patch_size=config.patch_size,
            max_image_length=(config.image_size // config.patch_size) ** 2,  # every patch, none sampled away
        )
        self.hf = transformers.ViltModel(hf_config, add_pooling_layer=False)

    @property
    def width(self) -> int:
        return self.config.sizes.hidden_size

    def forward(self, pixels: Tensor, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """ViLT's images are normalised as BEiT-3's (mean = std = 0.5), so the pixels go in as they are."""
        return self.hf(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixels).last_hidden_state[:, 0]
