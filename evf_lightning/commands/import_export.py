"""`evf import` and `evf export`: official EVF-SAM checkpoint folders in and out.

The folder format and its checks live in `evf_lightning.hub.official_folder`; these verbs find the
pieces (a run's config and tokenizer, a checkpoint's weights) and report what they wrote.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from evf_lightning.hub.model_card import ModelCardFacts
    from evf_lightning.hub.run_checkpoint import RunCheckpoint

MODEL_FILE = "model.yaml"
# The LightningModule's init args a model card shows besides the model config.
CARD_MODULE_KEYS = ("init", "trainable", "optimizer", "loss")


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
    tracking_uri: str | None = None,
) -> list[str]:
    """Write a checkpoint of `evf fit` as an official EVF-SAM folder, which the official code loads.

    OUT gets config.json (model_type "evf" and the scale names of published sizes), every weight under
    its official name, the tokenizer files and a README.md model card (variant, data, config, the metrics of
    the checkpoint's MLflow run, how to load it). The model config comes from --run_config if given, else
    from the checkpoint's hyper-parameters, else from the config.yaml that `evf fit` wrote in the run folder.
    A run that cannot be read leaves the card without metrics, with a warning; the export goes on.

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
        tracking_uri: the MLflow store holding the checkpoint's run, for the card's metrics; default:
            MLFLOW_TRACKING_URI, else mlflow.db in the working directory (as `evf fit` logs).

    Returns:
        The names of the files written.
    """
    import torch

    from evf_lightning.hub.model_card import CARD_FILE, render_model_card
    from evf_lightning.hub.official_folder import FAMILIES, OfficialFolderError, save_official_folder, scale_names
    from evf_lightning.hub.run_checkpoint import RunCheckpointError, read_run_checkpoint

    try:
        run = read_run_checkpoint(ckpt, run_config, tokenizer)
    except (RunCheckpointError, OfficialFolderError) as error:
        raise SystemExit(f"evf export: {error}") from error
    card = render_model_card(card_facts(run, ckpt, out, tracking_uri))
    names = save_official_folder(
        out,
        run.config,
        run.state,
        run.tokenizer,
        format=format,
        max_shard_size=max_shard_size,
        dtype=getattr(torch, dtype) if dtype else None,
        source=str(ckpt),
        extra_files={CARD_FILE: card},
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


def card_facts(run: RunCheckpoint, ckpt: Path, out: Path, tracking_uri: str | None) -> ModelCardFacts:
    """What the model card of `run` says; the metrics are those of the checkpoint's MLflow run, when it answers."""
    from mlflow.exceptions import MlflowException

    from evf_lightning.hub.model_card import ModelCardFacts
    from evf_lightning.hub.official_folder import FAMILIES, config_to_dict, scale_names
    from evf_lightning.serve.predictor import VARIANTS
    from evf_lightning.tracking.logger import default_tracking_uri
    from evf_lightning.tracking.runs import RunLookupError, read_run
    from evf_lightning.training.resume import recorded_mlflow_run_id

    family = run.config.image_backbone.family
    sam_scale, beit_scale = scale_names(run.config)
    tracking_uri = tracking_uri or default_tracking_uri()
    run_id = recorded_mlflow_run_id(run.callbacks)
    metrics, metrics_source = None, f"{ckpt} records no MLflow run"
    if run_id is not None:
        try:
            record = read_run(tracking_uri, run_id, patient=False)
            metrics, metrics_source = record.data.metrics, f"read from {tracking_uri}"
        except (RunLookupError, MlflowException, OSError) as error:
            metrics_source = f"run {run_id} could not be read ({error})"
    if metrics is None:
        print(f"evf export: warning: the model card has no metrics: {metrics_source}", file=sys.stderr)
    init = run.module.get("init") or {}
    evf_init = init.get("evf") if isinstance(init, dict) else None
    return ModelCardFacts(
        title=f"{out.name}: {VARIANTS[family]}, trained with evf-lightning",
        family=family,
        variant=VARIANTS[family],
        official_model_type=FAMILIES[family].model_type,
        sam_scale=sam_scale,
        beit_scale=beit_scale,
        parameters=sum(tensor.numel() for tensor in run.state.values()),
        data={stage: run.data[stage] for stage in ("train", "val", "test") if stage in run.data},
        config={"model": config_to_dict(run.config), **{k: run.module[k] for k in CARD_MODULE_KEYS if k in run.module}},
        metrics=metrics,
        metrics_source=metrics_source,
        run_id=run_id,
        base_model=evf_init if _is_hub_id(evf_init) else None,
    )


def _is_hub_id(name: str | None) -> bool:
    """Whether an init.evf names a Hub repository (owner/name) rather than a local folder."""
    return bool(name) and re.fullmatch(r"[\w.-]+/[\w.-]+", name) is not None and not Path(name).exists()
