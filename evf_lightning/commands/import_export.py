"""`evf import` and `evf export`: official EVF-SAM checkpoint folders in and out.

The folder format and its checks live in `evf_lightning.hub.official_folder`; these verbs find the
pieces (a run's config and tokenizer, a checkpoint's weights) and report what they wrote.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Literal

MODEL_FILE = "model.yaml"


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

    from evf_lightning.hub.official_folder import FAMILIES, OfficialFolderError, save_official_folder, scale_names
    from evf_lightning.hub.run_checkpoint import RunCheckpointError, read_run_checkpoint

    try:
        run = read_run_checkpoint(ckpt, run_config, tokenizer)
    except (RunCheckpointError, OfficialFolderError) as error:
        raise SystemExit(f"evf export: {error}") from error
    names = save_official_folder(
        out,
        run.config,
        run.state,
        run.tokenizer,
        format=format,
        max_shard_size=max_shard_size,
        dtype=getattr(torch, dtype) if dtype else None,
        source=str(ckpt),
    )
    size = sum((out / name).stat().st_size for name in names)
    sam_scale, beit_scale = scale_names(run.config)
    print(f"{out}: {len(names)} files, {size:,} bytes, {len(run.state)} tensors from {ckpt}")
    for name in names:
        print(f"  {name}")
    print(f"model config from {run.config_source}; tokenizer from {run.tokenizer}")
    if sam_scale and beit_scale:
        family = FAMILIES[run.config.image_backbone.family]
        print(f"official code, from its repo: python inference.py --version {out} --model_type {family.model_type}")
    else:
        print(
            f"sizes are not a published preset (sam_scale {sam_scale}, mm_extractor_scale {beit_scale}): "
            "the official code cannot build this model; `evf import` and model.init.evf read it"
        )
    return names
