"""Masks for a user's image and prompts, from an exported folder or a checkpoint of `evf fit`.

`predict-image`, the demo and the MLflow pyfunc all predict through `Predictor`, and `Predictor` goes the way
evaluation goes: the same preprocessing, tokenisation, padding and upscaling (`data/`), the same model call. So a
mask a user sees is the mask the metrics scored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from evf_lightning.data.batch import pad_token_ids
from evf_lightning.data.expression_dataset import EmptyExpressionError, tokenize_expression
from evf_lightning.data.tokenizer import check_fits_vocabulary, load_tokenizer
from evf_lightning.data.transforms import Beit3Preprocess, SamPreprocess, upscale_batch_logits
from evf_lightning.hub.official_folder import (
    CONFIG_FILE,
    OfficialFolderError,
    load_official_folder,
    read_official_config,
)
from evf_lightning.models.evf import EvfModel, EvfModelConfig

# The published variants by backbone family, for errors a user reads.
VARIANTS = {"sam": "EVF-SAM (SAM ViT)", "sam2": "EVF-SAM2 (SAM-2 Hiera)", "effi": "EVF-Effi-SAM (EfficientSAM)"}


class ModelSourceError(ValueError):
    """A model path that is not an exported folder or checkpoint of the variant asked for."""


class PromptError(ValueError):
    """A prompt the model cannot read (empty, or nothing but special tokens)."""


@dataclass
class Predictor:
    """A model in eval mode with its tokenizer; `source` names where it was loaded from."""

    model: EvfModel
    tokenizer: PreTrainedTokenizerBase
    source: str

    def __post_init__(self) -> None:
        self.model.eval()
        config = self.config
        self.sam_preprocess = SamPreprocess(size=config.image_backbone.image_size, resize=config.image_backbone.resize)
        self.beit_preprocess = Beit3Preprocess(size=config.prompt_encoder.image_size)

    @property
    def config(self) -> EvfModelConfig:
        return self.model.config

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> Predictor:
        self.model.to(device)
        return self

    def tokenize(self, prompts: Sequence[str]) -> list[list[int]]:
        """Token ids of each prompt; an empty list, a blank prompt or one of special tokens only is refused."""
        if isinstance(prompts, str) or not prompts:
            raise PromptError(f"give a list of one or more prompts, not {prompts!r}")
        ids = []
        for index, prompt in enumerate(prompts):
            if not isinstance(prompt, str) or not prompt.strip():
                raise PromptError(f"prompt {index} is empty: {prompt!r}; describe the object to segment")
            try:
                ids.append(tokenize_expression(self.tokenizer, prompt, f"prompt {index}"))
            except EmptyExpressionError as error:
                raise PromptError(f"prompt {index} ({prompt!r}) holds no word the tokenizer knows") from error
        return ids

    @torch.inference_mode()
    def logits(self, image: np.ndarray, prompts: Sequence[str]) -> torch.Tensor:
        """fp32 logits [P, H, W] at the image's size, one per prompt; the image is encoded once for all of them."""
        token_ids = self.tokenize(prompts)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected a uint8 RGB image [H, W, 3]; got {image.dtype} {tuple(image.shape)}")
        device = self.device
        sam_pixels, resized_hw = self.sam_preprocess(image)
        beit_pixels = self.beit_preprocess(image)
        input_ids, attention_mask = pad_token_ids(token_ids, self.tokenizer.pad_token_id)
        image_index = torch.zeros(len(token_ids), dtype=torch.long, device=device)
        low_res = self.model(
            sam_pixels[None].to(device),
            beit_pixels[None].to(device),
            input_ids.to(device),
            attention_mask.to(device),
            image_index,
        )
        backbone = self.config.image_backbone
        (logits,) = upscale_batch_logits(
            low_res, image_index, [resized_hw], [image.shape[:2]], backbone.image_size, backbone.resize
        )
        return logits.cpu()

    def predict(self, image: np.ndarray, prompts: Sequence[str]) -> np.ndarray:
        """Binary masks bool [P, H, W], one per prompt, at the image's size (logit > 0, as evaluation thresholds)."""
        return (self.logits(image, prompts) > 0).numpy()


def load_predictor(
    path: Path,
    *,
    family: str | None = None,
    tokenizer: Path | None = None,
    run_config: Path | None = None,
    device: str | None = None,
    require: Callable[[EvfModelConfig], None] | None = None,
) -> Predictor:
    """A Predictor from an exported (official-format) folder or a checkpoint of `evf fit` (file or sharded folder).

    `family` (sam, sam2, effi), when given, is checked against the model's before the model is built, and so is
    `require`, a check of what a caller needs of the config that raises TypeError or ValueError saying why;
    `tokenizer` and `run_config` are for checkpoints, as `evf export` takes them (a folder brings its own tokenizer).
    """
    path = Path(path)
    if family is not None and family not in VARIANTS:
        raise ModelSourceError(f"variant family {family!r} is not one of {sorted(VARIANTS)}")
    if (path / CONFIG_FILE).is_file():
        try:
            _check_config(read_official_config(path), family, require, path)
            model, text_tokenizer = load_official_folder(path), load_tokenizer(path)
        except OfficialFolderError as error:
            raise ModelSourceError(str(error)) from error
    else:
        from evf_lightning.hub.pretrained import load_into
        from evf_lightning.hub.run_checkpoint import RunCheckpointError, read_run_checkpoint

        try:
            run = read_run_checkpoint(path, run_config, tokenizer)
        except (RunCheckpointError, OfficialFolderError) as error:
            raise ModelSourceError(
                f"{path} is neither an exported model folder (no {CONFIG_FILE}) nor a usable checkpoint: {error}"
            ) from error
        _check_config(run.config, family, require, path)
        # An exported folder's tokenizer was checked against its vocabulary on loading; a run's is checked here.
        text_tokenizer = load_tokenizer(run.tokenizer)
        check_fits_vocabulary(
            text_tokenizer,
            run.config.prompt_encoder.vocab_size,
            str(run.tokenizer),
            f"the model of {path}",
            ModelSourceError,
        )
        model = EvfModel(run.config)
        load_into(model, run.state, str(path))
    predictor = Predictor(model, text_tokenizer, str(path))
    return predictor.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _check_config(
    config: EvfModelConfig, family: str | None, require: Callable[[EvfModelConfig], None] | None, path: Path
) -> None:
    found = config.image_backbone.family
    if family is not None and found != family:
        raise ModelSourceError(
            f"{path} holds an {VARIANTS[found]} model (backbone family {found!r}), not the {VARIANTS[family]} "
            f"asked for (family {family!r})"
        )
    if require is not None:
        try:
            require(config)
        except (TypeError, ValueError) as error:
            raise ModelSourceError(f"{path}: {error}") from error
