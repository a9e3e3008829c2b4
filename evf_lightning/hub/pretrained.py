"""Start a model from published weights: SAM, BEiT-3, or a whole official EVF checkpoint.

Every file from outside is untrusted: safetensors, or `torch.load(weights_only=True)`, which refuses
anything but tensors and plain containers. Keys are matched strictly through the official name map,
and a mismatch names the file and the keys.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor, nn
from transformers import PreTrainedModel

from evf_lightning.hub.official_names import name_map
from evf_lightning.models.evf import EvfModel

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


@dataclass(frozen=True)
class PretrainedWeights:
    """Where a run's initial weights come from; all optional, applied in this order.

    `sam`: a segment-anything checkpoint (e.g. sam_vit_h_4b8939.pth); `beit3`: a microsoft/unilm BEiT-3
    checkpoint (e.g. beit3_large_patch16_224.pth, the MLM one); `evf`: an official EVF-SAM folder or
    weights file, which sets every weight at once; `prompt_encoder`: a local Hugging Face folder
    (save_pretrained layout) for a transformers prompt encoder (CLIP, ViLT, BERT-like, a causal LM).
    """

    sam: str | None = None
    beit3: str | None = None
    evf: str | None = None
    prompt_encoder: str | None = None


class CheckpointMismatchError(RuntimeError):
    """The weights in a file do not fit the configured model."""


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a weights file or an HF-style folder (single file or shards with an index)."""
    path = Path(path)
    if path.is_dir():
        return _read_folder(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        return load_file(path)
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("model", "state_dict", "module"):
        if isinstance(loaded, dict) and isinstance(loaded.get(wrapper), dict):
            loaded = loaded[wrapper]
    if not isinstance(loaded, dict):
        raise CheckpointMismatchError(f"{path} holds a {type(loaded).__name__}, not a state dict")
    return loaded


def _read_folder(folder: Path) -> dict[str, Tensor]:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return read_state_dict(folder / name)
    for name in INDEX_FILES:
        if (folder / name).is_file():
            index = json.loads((folder / name).read_text())
            shards = sorted(set(index["weight_map"].values()))
            missing = [s for s in shards if not (folder / s).is_file()]
            if missing:
                raise FileNotFoundError(f"{folder / name} lists weight shards that are missing: {missing}")
            state: dict[str, Tensor] = {}
            for shard in shards:
                state.update(read_state_dict(folder / shard))
            return state
    raise FileNotFoundError(f"{folder} has none of {WEIGHT_FILES + INDEX_FILES}")


def load_into(module: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """Strict load with an error that names the file, the missing and unexpected keys, and bad shapes."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        raise CheckpointMismatchError(
            f"{source} does not fit the configured model: "
            f"{len(missing)} missing {missing[:5]}, {len(unexpected)} unexpected {unexpected[:5]}, "
            f"{len(shapes)} shape mismatches {shapes[:5]}"
        )
    module.load_state_dict(state, strict=True)


def load_pretrained(model: EvfModel, weights: PretrainedWeights) -> None:
    """Apply `weights` to an EvfModel (its `image_backbone`, `prompt_encoder.beit3`, or all of it)."""
    names = name_map(model.config.image_backbone.family)
    if weights.sam:
        load_image_backbone(model.image_backbone, model.config.image_backbone.family, weights.sam)
    if weights.beit3:
        if not hasattr(model.prompt_encoder, "beit3"):
            raise ValueError(
                f"model.init.beit3 {weights.beit3} given, but the prompt encoder is {model.config.prompt_encoder}"
            )
        state = {k: v for k, v in read_state_dict(weights.beit3).items() if k.startswith("beit3.")}
        load_into(model.prompt_encoder.beit3, _strip(state, "beit3."), weights.beit3)
    if weights.prompt_encoder:
        load_hf_prompt_encoder(model.prompt_encoder, weights.prompt_encoder)
    if weights.evf:
        load_into(model, names.from_official(read_state_dict(weights.evf)), weights.evf)


def load_hf_prompt_encoder(encoder: nn.Module, folder: str) -> None:
    """Every transformers tower of the encoder from a local folder (offline), strictly, by its own class.

    A CLIP folder (CLIPModel) fills both the text and the vision tower; transformers reads only safetensors
    or weights-only pickles.
    """
    towers = [module for module in encoder.children() if isinstance(module, PreTrainedModel)]
    if not towers:
        raise ValueError(f"model.init.prompt_encoder {folder}: {type(encoder).__name__} has no transformers model")
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"model.init.prompt_encoder {folder} is not a folder")
    for tower in towers:
        loaded = type(tower).from_pretrained(folder, local_files_only=True)
        load_into(tower, loaded.state_dict(), folder)


def load_image_backbone(backbone: nn.Module, family: str, path: str | Path) -> None:
    """A published SAM-family checkpoint (segment-anything's, SAM-2's `{"model": ...}` .pt, ...) into an image
    backbone of `family`: the keys EVF checkpoints keep under `visual_model.`, without SAM's pixel constants."""
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith("pixel_")}
    ours = name_map(family).from_official({f"visual_model.{k}": v for k, v in state.items()})
    load_into(backbone, _strip(ours, "image_backbone."), str(path))


def _strip(state: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k.removeprefix(prefix): v for k, v in state.items()}
