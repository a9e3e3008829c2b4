"""A checkpoint of `evf fit` with what it takes to use it: the weights, the model config and the tokenizer.

A Lightning checkpoint holds the weights (under the LightningModule's `model.` prefix) and, when the run saved
them, the model's hyper-parameters. The run folder holds the rest: the config.yaml `evf fit` wrote, which names
the tokenizer. `evf export`, `evf predict-image` and the demo all start from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from evf_lightning.hub.official_folder import config_from_dict
from evf_lightning.models.evf import EvfModelConfig

RUN_CONFIG = "config.yaml"


class RunCheckpointError(ValueError):
    """A checkpoint, run config or tokenizer that does not describe a usable trained model."""


@dataclass(frozen=True)
class RunCheckpoint:
    """What a trained model is made of; `config_source` says where its config was read.

    `module` (the LightningModule's init args: init, optimizer, loss, ...) and `data` (the DataModule's) are the
    run config's sections, for the model card; empty when the config was given as a model YAML. `callbacks` are
    the checkpoint's callback states (plain data), which record the MLflow run it belongs to.
    """

    state: dict[str, Tensor]
    config: EvfModelConfig
    config_source: str
    tokenizer: Path
    module: Mapping[str, Any] = field(default_factory=dict)
    data: Mapping[str, Any] = field(default_factory=dict)
    callbacks: Mapping[str, Any] = field(default_factory=dict)


def read_run_checkpoint(ckpt: Path, run_config: Path | None = None, tokenizer: Path | None = None) -> RunCheckpoint:
    """The weights of `ckpt` (a file or a sharded folder) with their model config and tokenizer folder.

    The model config comes from `run_config` if given, else from the checkpoint's hyper-parameters, else from the
    config.yaml `evf fit` wrote in the run folder; the tokenizer from `tokenizer`, else the run's data.tokenizer.
    """
    state, hparams_model, callbacks = _read_checkpoint(ckpt)
    given = run_config is not None
    run_config = run_config or _find_run_config(ckpt)
    document = _load_yaml(run_config) if run_config else {}
    if hparams_model is not None and not given:
        model_data, model_source = hparams_model, f"{ckpt} hyper_parameters"
    elif run_config is not None:
        model_data, model_source = _model_section(document, run_config), str(run_config)
    else:
        raise RunCheckpointError(
            f"no model config for {ckpt}: it has no hyper-parameters and neither "
            f"{ckpt.parent / RUN_CONFIG} nor {ckpt.parent.parent / RUN_CONFIG} exists; pass --run_config"
        )
    return RunCheckpoint(
        state=state,
        config=config_from_dict(model_data, model_source),
        config_source=model_source,
        tokenizer=tokenizer or _run_tokenizer(document, run_config),
        module=_optional_section(document, "model", run_config),
        data=_optional_section(document, "data", run_config),
        callbacks=callbacks,
    )


def _read_checkpoint(ckpt: Path) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any]]:
    """The model's state dict (without the LightningModule's `model.` prefix), plain model hyper-parameters and
    the callback states, from one load of any kind of checkpoint (file, FSDP or DeepSpeed folder)."""
    from evf_lightning.hub.consolidate import checkpoint_kind, load_consolidated

    try:
        checkpoint_kind(ckpt)
    except FileNotFoundError as error:
        raise RunCheckpointError(str(error)) from error
    try:
        checkpoint = load_consolidated(ckpt)
    except Exception as error:  # weights_only refuses anything but tensors and plain data, in several ways
        raise RunCheckpointError(f"{ckpt} does not load as tensors and plain data: {error}") from error
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise RunCheckpointError(f"{ckpt} has no 'state_dict': not a Lightning checkpoint")
    state = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    if not state:
        raise RunCheckpointError(f"{ckpt} holds no 'model.' weights: not a checkpoint of `evf fit`")
    hparams = checkpoint.get("hyper_parameters")
    model = hparams.get("model") if isinstance(hparams, dict) else None
    callbacks = checkpoint.get("callbacks")
    return state, model if isinstance(model, dict) else None, callbacks if isinstance(callbacks, dict) else {}


def _find_run_config(ckpt: Path) -> Path | None:
    """The config.yaml `evf fit` wrote in the run folder (checkpoints sit in its checkpoints/ folder)."""
    return next((p for p in (ckpt.parent / RUN_CONFIG, ckpt.parent.parent / RUN_CONFIG) if p.is_file()), None)


def _load_yaml(path: Path) -> dict[str, Any]:
    import yaml

    document = yaml.safe_load(path.read_text())
    if not isinstance(document, dict):
        raise RunCheckpointError(f"{path} is not a YAML mapping")
    return document


def _section(document: dict[str, Any], key: str, path: Path) -> tuple[dict[str, Any], Path]:
    """`document[key]`, reading it from its file when it is a path (relative to `path`, as the CLI reads it)."""
    value = document.get(key)
    if isinstance(value, str):
        file = path.parent / value
        return _load_yaml(file), file
    if not isinstance(value, dict):
        raise RunCheckpointError(f"{path} has no {key!r} section")
    return value, path


def _optional_section(document: dict[str, Any], key: str, path: Path | None) -> dict[str, Any]:
    """`document[key]` of a run or experiment config; empty for a model YAML (or no config)."""
    if path is None or "image_backbone" in document or key not in document:
        return {}
    return _section(document, key, path)[0]


def _model_section(document: dict[str, Any], path: Path) -> dict[str, Any]:
    """The model config of a model YAML, or the `model.model` of a run or experiment config."""
    if "image_backbone" in document:
        return document
    module, module_path = _section(document, "model", path)
    return _section(module, "model", module_path)[0]


def _run_tokenizer(document: dict[str, Any], path: Path | None) -> Path:
    """The run's data.tokenizer (paths in a run config are relative to where `evf fit` ran, as it read them)."""
    if path is None or "data" not in document:
        raise RunCheckpointError(f"{path or 'no run config'} names no data.tokenizer; pass --tokenizer")
    tokenizer = _section(document, "data", path)[0].get("tokenizer")
    if not tokenizer or not Path(tokenizer).is_dir():
        raise RunCheckpointError(f"data.tokenizer of {path} is {tokenizer!r}, not a folder here; pass --tokenizer")
    return Path(tokenizer)
