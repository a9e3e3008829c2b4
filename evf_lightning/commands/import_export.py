"""`evf import` and `evf export`: official EVF-SAM checkpoint folders in and out.

The folder format and its checks live in `evf_lightning.hub.official_folder`; these verbs find the
pieces (a run's config and tokenizer, a checkpoint's weights) and report what they wrote.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Literal

MODEL_FILE = "model.yaml"
RUN_CONFIG = "config.yaml"


def import_official(folder: Path, out: Path, experiment: Path | None = None) -> list[str]:
    """Check an official EVF-SAM folder and write OUT/model.yaml, our model config of it.

    The folder (config.json, weights, tokenizer files: the layout of the Hub's YxZhang/evf-sam*) is loaded
    strictly into our model, so a folder that could not be fine-tuned fails here, naming the file and the
    field or key. Fine-tuning from it is then two config fields, `model.model: OUT/model.yaml` and
    `model.init.evf: FOLDER`, plus the folder's tokenizer; the printed command sets them.

    Args:
        folder: the official checkpoint folder.
        out: folder to write model.yaml into (created if missing).
        experiment: the experiment YAML to fine-tune with, for the printed command.

    Returns:
        The fine-tuning command, as an argument list.
    """
    import yaml

    from evf_lightning.hub.official_folder import CONFIG_FILE, config_to_dict, load_official_folder, scale_names

    folder, out = folder.resolve(), out.resolve()
    model = load_official_folder(folder)
    config = model.config
    sam_scale, beit_scale = scale_names(config)
    out.mkdir(parents=True, exist_ok=True)
    header = (
        f"# Imported by `evf import` from {folder / CONFIG_FILE}\n"
        f"# (family {config.image_backbone.family}, sam_scale {sam_scale}, mm_extractor_scale {beit_scale}).\n"
        f"# Its weights: model.init.evf: {folder}\n"
    )
    (out / MODEL_FILE).write_text(header + yaml.safe_dump(config_to_dict(config), sort_keys=False))
    command = [
        "evf",
        "fit",
        "--config",
        str(experiment.resolve()) if experiment else "EXPERIMENT.yaml",
        "--model.model",
        str(out / MODEL_FILE),
        "--model.init.sam",
        "null",
        "--model.init.beit3",
        "null",
        "--model.init.evf",
        str(folder),
        "--data.tokenizer",
        str(folder),
    ]
    count = sum(p.numel() for p in model.state_dict().values())
    print(f"{folder}: loads strictly ({len(model.state_dict())} tensors, {count:,} values)")
    print(f"model config: {out / MODEL_FILE}")
    print("fine-tune from it with:")
    print("  " + shlex.join(command))
    return command


def export_official(
    ckpt: Path,
    out: Path,
    tokenizer: Path | None = None,
    run_config: Path | None = None,
    format: Literal["safetensors", "bin"] = "safetensors",
    max_shard_size: str | None = None,
    dtype: Literal["float32", "float16", "bfloat16"] | None = None,
) -> list[str]:
    """Write a checkpoint of `evf fit` as an official EVF-SAM folder, which the official code loads.

    OUT gets config.json (model_type "evf" and the scale names of published sizes), every weight under
    its official name, and the tokenizer files. The model config comes from --run_config if given, else
    from the checkpoint's hyper-parameters, else from the config.yaml that `evf fit` wrote in the run folder.

    Args:
        ckpt: a Lightning checkpoint written by `evf fit` (runs/<experiment>/<run>/checkpoints/*.ckpt): a file,
            or the folder of a sharded FSDP or DeepSpeed checkpoint (consolidated in memory).
        out: the folder to write; it must not exist or be empty.
        tokenizer: tokenizer folder to ship; default: the run's data.tokenizer.
        run_config: the run's config.yaml, an experiment YAML or a model YAML (configs/model/*.yaml). (Not
            `--config`: the CLI parser keeps that name for reading a verb's options from a file.)
        format: safetensors (model.safetensors) or bin (pytorch_model.bin).
        max_shard_size: split the weights into shards of at most this size (e.g. 2GB) plus an index file.
        dtype: cast floating weights to this type (the published checkpoints are float16); default: as saved.

    Returns:
        The names of the files written.
    """
    import torch

    from evf_lightning.hub.official_folder import FAMILIES, config_from_dict, save_official_folder, scale_names

    state, hparams_model = _read_checkpoint(ckpt)
    given = run_config is not None
    run_config = run_config or _find_run_config(ckpt)
    document = _load_yaml(run_config) if run_config else {}
    if hparams_model is not None and not given:
        model_data, model_source = hparams_model, f"{ckpt} hyper_parameters"
    elif run_config is not None:
        model_data, model_source = _model_section(document, run_config), str(run_config)
    else:
        raise SystemExit(
            f"evf export: no model config for {ckpt}: it has no hyper-parameters and neither "
            f"{ckpt.parent / RUN_CONFIG} nor {ckpt.parent.parent / RUN_CONFIG} exists; pass --run_config"
        )
    model_config = config_from_dict(model_data, model_source)
    tokenizer = tokenizer or _run_tokenizer(document, run_config)
    names = save_official_folder(
        out,
        model_config,
        state,
        tokenizer,
        format=format,
        max_shard_size=max_shard_size,
        dtype=getattr(torch, dtype) if dtype else None,
        source=str(ckpt),
    )
    size = sum((out / name).stat().st_size for name in names)
    sam_scale, beit_scale = scale_names(model_config)
    print(f"{out}: {len(names)} files, {size:,} bytes, {len(state)} tensors from {ckpt}")
    for name in names:
        print(f"  {name}")
    print(f"model config from {model_source}; tokenizer from {tokenizer}")
    if sam_scale and beit_scale:
        family = FAMILIES[model_config.image_backbone.family]
        print(f"official code, from its repo: python inference.py --version {out} --model_type {family.model_type}")
    else:
        print(
            f"sizes are not a published preset (sam_scale {sam_scale}, mm_extractor_scale {beit_scale}): "
            "the official code cannot build this model; `evf import` and model.init.evf read it"
        )
    return names


def _read_checkpoint(ckpt: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The model's state dict (without the LightningModule's `model.` prefix) and plain model hyper-parameters."""
    from evf_lightning.hub.consolidate import checkpoint_kind, load_consolidated

    try:
        checkpoint_kind(ckpt)
    except FileNotFoundError as error:
        raise SystemExit(f"evf export: {error}") from error
    try:
        checkpoint = load_consolidated(ckpt)
    except Exception as error:  # weights_only refuses anything but tensors and plain data, in several ways
        raise SystemExit(f"evf export: {ckpt} does not load as tensors and plain data: {error}") from error
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise SystemExit(f"evf export: {ckpt} has no 'state_dict': not a Lightning checkpoint")
    state = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    hparams = checkpoint.get("hyper_parameters")
    model = hparams.get("model") if isinstance(hparams, dict) else None
    return state, model if isinstance(model, dict) else None


def _find_run_config(ckpt: Path) -> Path | None:
    """The config.yaml `evf fit` wrote in the run folder (checkpoints sit in its checkpoints/ folder)."""
    return next((p for p in (ckpt.parent / RUN_CONFIG, ckpt.parent.parent / RUN_CONFIG) if p.is_file()), None)


def _load_yaml(path: Path) -> dict[str, Any]:
    import yaml

    document = yaml.safe_load(path.read_text())
    if not isinstance(document, dict):
        raise SystemExit(f"evf export: {path} is not a YAML mapping")
    return document


def _section(document: dict[str, Any], key: str, path: Path) -> tuple[dict[str, Any], Path]:
    """`document[key]`, reading it from its file when it is a path (relative to `path`, as the CLI reads it)."""
    value = document.get(key)
    if isinstance(value, str):
        file = path.parent / value
        return _load_yaml(file), file
    if not isinstance(value, dict):
        raise SystemExit(f"evf export: {path} has no {key!r} section")
    return value, path


def _model_section(document: dict[str, Any], path: Path) -> dict[str, Any]:
    """The model config of a model YAML, or the `model.model` of a run or experiment config."""
    if "image_backbone" in document:
        return document
    module, module_path = _section(document, "model", path)
    return _section(module, "model", module_path)[0]


def _run_tokenizer(document: dict[str, Any], path: Path | None) -> Path:
    """The run's data.tokenizer (paths in a run config are relative to where `evf fit` ran, as it read them)."""
    if path is None or "data" not in document:
        raise SystemExit(f"evf export: {path or 'no run config'} names no data.tokenizer; pass --tokenizer")
    tokenizer = _section(document, "data", path)[0].get("tokenizer")
    if not tokenizer or not Path(tokenizer).is_dir():
        raise SystemExit(f"evf export: data.tokenizer of {path} is {tokenizer!r}, not a folder here; pass --tokenizer")
    return Path(tokenizer)
