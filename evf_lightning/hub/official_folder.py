"""Official EVF-SAM checkpoint folders, both ways: write one the official code loads, read one into our model.

An official folder is what `EvfSamModel.from_pretrained(folder)` and `AutoTokenizer.from_pretrained(folder)`
read (reference/checkpoints.md §7, §9):

* `config.json`: `model_type` "evf"; `architectures`, the official class of the backbone family; `hidden_size`
  (the BEiT-3 width, which the official code asserts) and `out_dim` (the prompt width); `sam_scale` and
  `mm_extractor_scale`, the scale names the official code builds its modules from; bos 0 / eos 2 / pad 1;
  `tie_word_embeddings` false; `torch_dtype` and `transformers_version`.
* the weights under the official key names: `model.safetensors` with metadata {"format": "pt"} (old loaders
  read it unconditionally) or `pytorch_model.bin`, optionally sharded with an index file. Every key is
  written, persistent buffers included, each tensor in its own storage: transformers 4.3x fills a missing
  key with uninitialised memory and only warns, and no key may contain "gamma" or "beta" (4.x renames them).
* the tokenizer files `sentencepiece.bpe.model`, `tokenizer_config.json`, `special_tokens_map.json`, plus
  `added_tokens.json` where the tokenizer has one (evf-sam-multitask's "[semantic]").

Scale names only describe the published sizes (`FAMILIES`, `BEIT3_SCALES`; the official code builds SAM-2
only at "tiny" and "large", so "small" and "base_plus" folders load here but not there). A model of any
other size, such as our tiny test models, cannot be named by them: its scale fields are written as null,
so the official code refuses to build it instead of building something else. Our whole model config is
therefore written as one extra field, `"evf_lightning": {...}`, which the official `EvfConfig` takes as an
extra keyword and ignores. It is written for every model, since settings the official config has no word
for (fusion timing, resize mode, multimask output) live only there, and on import it is preferred; the
official fields must then agree with it. A folder without it (the published ones) gets each scale's preset
and our defaults for the rest: `multimask_output` is False, as evf-sam, evf-sam-multitask and evf-sam2 were
trained (evf-sam2-multitask wants True; reference/evf-sam-recipe.md §1).

Backbone config classes are looked up by module and class name only when a family is used, so a
family whose module is not installed fails when, and only when, it is asked for.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import save_file
from torch import Tensor

from evf_lightning.data.tokenizer import check_fits_vocabulary
from evf_lightning.hub.official_names import UnmappedKeyError, name_map
from evf_lightning.hub.pretrained import INDEX_FILES, WEIGHT_FILES, CheckpointMismatchError, load_into, read_state_dict
from evf_lightning.models.beit3 import Beit3Config
from evf_lightning.models.evf import EvfModel, EvfModelConfig
from evf_lightning.models.prompt_encoder import Beit3PromptConfig

CONFIG_FILE = "config.json"
OUR_FIELD = "evf_lightning"
TOKENIZER_FILES = ("sentencepiece.bpe.model", "tokenizer_config.json", "special_tokens_map.json")
OPTIONAL_TOKENIZER_FILES = ("added_tokens.json",)
WeightFormat = Literal["safetensors", "bin"]

# The official EvfConfig's defaults for the fields a published config.json may leave out.
OFFICIAL_DEFAULTS = {"hidden_size": 768, "out_dim": 256}
# Fields the official code builds the model from: they must agree with the model config.
BUILD_FIELDS = ("architectures", "hidden_size", "out_dim", "sam_scale", "mm_extractor_scale")


@dataclass(frozen=True)
class OfficialFamily:
    """How the official code names one backbone family, and where our config of it lives.

    `scales` maps each official `sam_scale` to the preset classmethod of our config class; `model_type`
    is the official inference.py flag (`--model_type`) that picks the class.
    """

    architecture: str
    model_type: str
    config_module: str
    config_class: str
    scales: Mapping[str, str]


FAMILIES: dict[str, OfficialFamily] = {
    "sam": OfficialFamily("EvfSamModel", "ori", "evf_lightning.models.sam", "SamBackboneConfig", {"huge": "vit_h"}),
    "sam2": OfficialFamily(
        "EvfSam2Model",
        "sam2",
        "evf_lightning.models.sam2",
        "Sam2BackboneConfig",
        {"tiny": "hiera_tiny", "small": "hiera_small", "base_plus": "hiera_base_plus", "large": "hiera_large"},
    ),
    "effi": OfficialFamily(
        "EvfEffiSamModel",
        "effi",
        "evf_lightning.models.efficient_sam",
        "EfficientSamBackboneConfig",
        {"tiny": "vit_t", "small": "vit_s"},
    ),
}
BEIT3_SCALES: dict[str, Callable[[], Beit3Config]] = {"base": Beit3Config.base, "large": Beit3Config.large}
# Backbone config fields that change how the network runs or starts from scratch, not its loaded weights: a preset
# with other values there is still that scale.
RUNTIME_FIELDS = ("resize", "attn_implementation", "dynamic_multimask_via_stability", "init_std")


class OfficialFolderError(ValueError):
    """A folder, config.json field or tokenizer file that does not describe a model we can build."""


# ----- model config <-> plain data ----------------------------------------------------------------------
def config_to_dict(config: EvfModelConfig) -> dict[str, Any]:
    """Plain JSON/YAML data (lists, not tuples) in the layout of configs/model/*.yaml."""
    return json.loads(json.dumps(asdict(config)))


def config_from_dict(data: Mapping[str, Any], source: str) -> EvfModelConfig:
    """Parse plain data with the same typed parser `evf fit` uses for `model.model`; errors name `source`."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--model", type=EvfModelConfig)
    try:
        return parser.instantiate(parser.parse_object({"model": dict(data)})).model
    except Exception as error:  # jsonargparse raises several types; all mean "not a model config"
        raise OfficialFolderError(f"{source} is not an evf-lightning model config: {error}") from error


# ----- scale names ---------------------------------------------------------------------------------------
def backbone_config_class(family: str) -> type:
    """Our config class of a backbone family, imported on first use."""
    entry = _family(family)
    try:
        module = importlib.import_module(entry.config_module)
    except ModuleNotFoundError as error:
        if error.name != entry.config_module:
            raise
        raise OfficialFolderError(
            f"backbone family {family!r} ({entry.architecture}) needs {entry.config_module}, which this install lacks"
        ) from error
    return getattr(module, entry.config_class)


def scale_names(config: EvfModelConfig) -> tuple[str | None, str | None]:
    """(sam_scale, mm_extractor_scale) of a model; None where its size is no published preset."""
    backbone = config.image_backbone
    runtime = {name: getattr(backbone, name) for name in RUNTIME_FIELDS if hasattr(backbone, name)}
    presets = _family(backbone.family).scales.items()
    sam = next((s for s, preset in presets if replace(getattr(type(backbone), preset)(), **runtime) == backbone), None)
    beit = next((s for s, preset in BEIT3_SCALES.items() if preset() == config.prompt_encoder.beit3), None)
    return sam, beit


def _family(family: str) -> OfficialFamily:
    if family not in FAMILIES:
        raise OfficialFolderError(f"no official EVF class for backbone family {family!r}; known: {sorted(FAMILIES)}")
    return FAMILIES[family]


# ----- config.json ---------------------------------------------------------------------------------------
def official_config(config: EvfModelConfig, torch_dtype: torch.dtype) -> dict[str, Any]:
    """The config.json of a model, with the fields of the published ones plus our own config."""
    sam_scale, beit_scale = scale_names(config)
    return {
        "architectures": [_family(config.image_backbone.family).architecture],
        "bos_token_id": 0,
        "eos_token_id": 2,
        OUR_FIELD: config_to_dict(config),
        "hidden_size": config.prompt_encoder.beit3.embed_dim,
        "mm_extractor_scale": beit_scale,
        "model_type": "evf",
        "out_dim": config.image_backbone.prompt_dim,
        "pad_token_id": 1,
        "sam_scale": sam_scale,
        "tie_word_embeddings": False,
        "torch_dtype": str(torch_dtype).removeprefix("torch."),
        "transformers_version": version("transformers"),
    }


def read_official_config(folder: str | Path) -> EvfModelConfig:
    """Our model config from a folder's config.json; a field that does not fit names the file and field."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: not an official EVF checkpoint folder")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise OfficialFolderError(f"{path} is not JSON: {error}") from error
    if data.get("model_type") != "evf":
        raise OfficialFolderError(f"{path}: field 'model_type' is {data.get('model_type')!r}, expected 'evf'")
    family = _family_from_architectures(data.get("architectures"), path)
    if data.get(OUR_FIELD) is not None:
        config = config_from_dict(data[OUR_FIELD], f"{path} field {OUR_FIELD!r}")
        described_by = f"the {OUR_FIELD!r} field"
    else:
        config = _config_from_scales(data, family, path)
        described_by = "the scale names"
    expected = official_config(config, torch.float32)
    for field in BUILD_FIELDS:
        value = data.get(field, OFFICIAL_DEFAULTS.get(field))
        if value != expected[field]:
            raise OfficialFolderError(
                f"{path}: field {field!r} is {value!r}, expected {expected[field]!r} from {described_by}"
            )
    return config


def _family_from_architectures(architectures: Any, path: Path) -> str:
    known = {entry.architecture: family for family, entry in FAMILIES.items()}
    if not (isinstance(architectures, list) and len(architectures) == 1 and architectures[0] in known):
        raise OfficialFolderError(
            f"{path}: field 'architectures' is {architectures!r}, expected one of {[[name] for name in known]}"
        )
    return known[architectures[0]]


def _config_from_scales(data: Mapping[str, Any], family: str, path: Path) -> EvfModelConfig:
    scales = FAMILIES[family].scales
    sam_scale, beit_scale = data.get("sam_scale"), data.get("mm_extractor_scale")
    if sam_scale not in scales:
        raise OfficialFolderError(
            f"{path}: field 'sam_scale' is {sam_scale!r}; {FAMILIES[family].architecture} comes in {sorted(scales)}"
            + (f" (a model of unpublished size needs the {OUR_FIELD!r} field)" if sam_scale is None else "")
        )
    if beit_scale not in BEIT3_SCALES:
        raise OfficialFolderError(
            f"{path}: field 'mm_extractor_scale' is {beit_scale!r}; BEiT-3 comes in {sorted(BEIT3_SCALES)}"
        )
    backbone = getattr(backbone_config_class(family), scales[sam_scale])()
    return EvfModelConfig(backbone, Beit3PromptConfig(BEIT3_SCALES[beit_scale]()))


# ----- weights -------------------------------------------------------------------------------------------
def official_state_dict(
    config: EvfModelConfig, state: Mapping[str, Tensor], source: str, dtype: torch.dtype | None = None
) -> dict[str, Tensor]:
    """Our state dict -> the official keys, checked against the model `config` builds, ready to save.

    Floating tensors are cast to `dtype` (if given); each tensor gets a storage of its own, because
    safetensors refuses shared storage and torch.save would write a whole storage for a view.
    """
    try:
        official = name_map(config.image_backbone.family).to_official(state)
    except UnmappedKeyError as error:
        raise CheckpointMismatchError(f"{source}: {error.args[0]}") from error
    _check_fits(_official_shapes(config), official, source)
    renamed = [key for key in official if "gamma" in key or "beta" in key]
    if renamed:
        raise CheckpointMismatchError(f"{source}: official keys {renamed[:5]} would be renamed by transformers 4.x")
    return _own_storage(official, dtype)


def read_official_weights(folder: Path, config: EvfModelConfig) -> dict[str, Tensor]:
    """Tensors of a folder under our names, checked strictly; errors name the file (shard) and the key."""
    state = read_state_dict(folder)
    source, where = _locator(folder)
    _check_fits(_official_shapes(config), state, source, where)
    return name_map(config.image_backbone.family).from_official(state)


def _check_fits(
    expected: Mapping[str, torch.Size],
    state: Mapping[str, Tensor],
    source: str,
    where: Callable[[str], str] = lambda key: "",
) -> None:
    """Strict key and shape check in official names; `where(key)` names the shard that holds a key, if any."""

    def at(key: str) -> str:
        return f"{where(key)}: {key}" if where(key) else key

    missing = [key for key in expected if key not in state]
    unexpected = [at(key) for key in state if key not in expected]
    shapes = [
        f"{at(key)} {tuple(value.shape)} vs model {tuple(expected[key])}"
        for key, value in state.items()
        if key in expected and value.shape != expected[key]
    ]
    if missing or unexpected or shapes:
        raise CheckpointMismatchError(
            f"the weights in {source} do not fit the configured model: {len(missing)} missing {missing[:5]}, "
            f"{len(unexpected)} unexpected {unexpected[:5]}, {len(shapes)} shape mismatches {shapes[:5]}"
        )


def _official_shapes(config: EvfModelConfig) -> dict[str, torch.Size]:
    """Official key -> shape of the model `config` builds, without allocating it."""
    with torch.device("meta"):
        state = EvfModel(config).state_dict()
    return {key: value.shape for key, value in name_map(config.image_backbone.family).to_official(state).items()}


def _locator(folder: Path) -> tuple[str, Callable[[str], str]]:
    """The file `read_state_dict` read in a folder, and which shard of it holds a key (by its index)."""
    single = next((folder / name for name in WEIGHT_FILES if (folder / name).is_file()), None)
    if single is not None:
        return str(single), lambda key: ""
    index = next(folder / name for name in INDEX_FILES if (folder / name).is_file())
    weight_map = json.loads(index.read_text())["weight_map"]
    return str(index), lambda key: weight_map.get(key, f"a shard {index.name} does not list")


def _own_storage(state: Mapping[str, Tensor], dtype: torch.dtype | None) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    seen: set[int] = set()
    for key, tensor in state.items():
        tensor = tensor.detach()
        if tensor.device.type not in ("cpu", "meta"):
            tensor = tensor.cpu()
        if dtype is not None and tensor.is_floating_point() and tensor.dtype != dtype:
            tensor = tensor.to(dtype)
        elif tensor.device.type == "cpu":
            storage = tensor.untyped_storage()
            if storage.data_ptr() in seen or storage.nbytes() != tensor.nbytes or not tensor.is_contiguous():
                tensor = tensor.clone(memory_format=torch.contiguous_format)
            seen.add(tensor.untyped_storage().data_ptr())
        out[key] = tensor
    return out


def parse_size(size: int | str) -> int:
    """Bytes from 5000000, "500KB", "2GB" or "1.5GiB" (KB, MB, GB are powers of 1000, as transformers reads them)."""
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*", size, flags=re.IGNORECASE)
    if not match:
        raise ValueError(f"max_shard_size {size!r} is not a size such as 500MB or 2GB")
    unit = (match.group(2) or "B").upper()
    base = 1024 if "I" in unit else 1000
    return int(float(match.group(1)) * base ** "BKMGT".index(unit[0]))


def write_weights(
    folder: Path,
    tensors: Mapping[str, Tensor],
    format: WeightFormat = "safetensors",
    max_shard_size: int | str | None = None,
) -> list[str]:
    """Write tensors as one file, or as shards of at most `max_shard_size` bytes plus an index; returns the names.

    Shards are filled greedily in key order; a tensor larger than the limit gets a shard of its own.
    """
    limit = parse_size(max_shard_size) if max_shard_size is not None else None
    shards: list[dict[str, Tensor]] = [{}]
    size = 0
    for key, tensor in tensors.items():
        if limit is not None and shards[-1] and size + tensor.nbytes > limit:
            shards.append({})
            size = 0
        shards[-1][key] = tensor
        size += tensor.nbytes
    single, index_name = (
        (WEIGHT_FILES[0], INDEX_FILES[0]) if format == "safetensors" else (WEIGHT_FILES[1], INDEX_FILES[1])
    )
    stem, suffix = single.split(".", 1)
    count = len(shards)
    names = [single] if count == 1 else [f"{stem}-{i:05d}-of-{count:05d}.{suffix}" for i in range(1, count + 1)]
    for name, shard in zip(names, shards, strict=True):
        if format == "safetensors":
            save_file(shard, folder / name, metadata={"format": "pt"})
        else:
            torch.save(shard, folder / name)
    if count > 1:
        index = {
            "metadata": {"total_size": sum(t.nbytes for t in tensors.values())},
            "weight_map": {key: name for name, shard in zip(names, shards, strict=True) for key in shard},
        }
        (folder / index_name).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
        names.append(index_name)
    return names


# ----- tokenizer -----------------------------------------------------------------------------------------
def check_tokenizer(folder: str | Path, vocab_size: int) -> int:
    """Load a tokenizer folder as training does; returns how many ids it emits. Errors name the file."""
    from transformers import XLMRobertaTokenizer

    folder = Path(folder)
    for name in TOKENIZER_FILES:
        if not (folder / name).is_file():
            raise OfficialFolderError(f"{folder / name} is missing: a tokenizer folder holds {list(TOKENIZER_FILES)}")
    for name in (*TOKENIZER_FILES[1:], *OPTIONAL_TOKENIZER_FILES):
        if (folder / name).is_file():
            try:
                json.loads((folder / name).read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise OfficialFolderError(f"{folder / name} is not JSON: {error}") from error
    try:
        tokenizer = XLMRobertaTokenizer.from_pretrained(str(folder), padding_side="right")
    except Exception as error:  # sentencepiece and transformers fail in many ways on a broken model file
        raise OfficialFolderError(f"{folder / TOKENIZER_FILES[0]}: the tokenizer does not load: {error}") from error
    check_fits_vocabulary(tokenizer, vocab_size, str(folder), "the model", OfficialFolderError)
    return len(tokenizer)


# ----- whole folders -------------------------------------------------------------------------------------
def save_official_folder(
    folder: str | Path,
    config: EvfModelConfig,
    state: Mapping[str, Tensor],
    tokenizer: str | Path,
    *,
    format: WeightFormat = "safetensors",
    max_shard_size: int | str | None = None,
    dtype: torch.dtype | None = None,
    source: str = "the state dict",
    extra_files: Mapping[str, str] | None = None,
) -> list[str]:
    """Write config.json, the weights and the tokenizer files into `folder`, which must not hold files yet.

    `state` is our state dict (EvfModel.state_dict()); `source` names it in errors; `extra_files` are text
    files (name -> text) written with them, such as the model card. The folder is written
    next to its destination and renamed into place, so a failed export leaves nothing half-written.
    """
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} is not empty; export into a new folder")
    check_tokenizer(tokenizer, config.prompt_encoder.beit3.vocab_size)
    tensors = official_state_dict(config, state, source, dtype)
    floating = next((t.dtype for t in tensors.values() if t.is_floating_point()), torch.float32)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        text = json.dumps(official_config(config, floating), indent=2, sort_keys=True) + "\n"
        (staging / CONFIG_FILE).write_text(text)
        names = [CONFIG_FILE, *write_weights(staging, tensors, format, max_shard_size)]
        # safetensors creates its files readable by the owner only; give them the umask's mode, as config.json.
        for name in names:
            (staging / name).chmod((staging / CONFIG_FILE).stat().st_mode & 0o777)
        for name in (*TOKENIZER_FILES, *OPTIONAL_TOKENIZER_FILES):
            if (Path(tokenizer) / name).is_file():
                shutil.copyfile(Path(tokenizer) / name, staging / name)
                names.append(name)
        for name, text in (extra_files or {}).items():
            (staging / name).write_text(text)
            names.append(name)
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return sorted(names)


def load_official_folder(folder: str | Path) -> EvfModel:
    """An EvfModel (fp32, which holds fp16 and bf16 files exactly) from an official folder, strictly loaded.

    The config, the tokenizer and every weight are checked; errors name the file and the field or key.
    """
    folder = Path(folder)
    config = read_official_config(folder)
    check_tokenizer(folder, config.prompt_encoder.beit3.vocab_size)
    state = read_official_weights(folder, config)
    model = EvfModel(config)
    load_into(model, state, str(folder))
    return model
