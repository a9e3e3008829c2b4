"""Make every run self-describing, on disk and in MLflow: resolved config, git commit, environment."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

from lightning import LightningModule, Trainer
from lightning.pytorch.cli import SaveConfigCallback
from rich.console import Console
from rich.table import Table

from evf_lightning.tracking.logger import EvfMLFlowLogger

BEST_CHECKPOINT_TAG = "evf.best_checkpoint"
SUMMARY_METRICS = ("ciou", "giou", "precision_0.5")


def git_state(cwd: Path | None = None) -> dict[str, str]:
    """Commit and dirty flag of the checkout the code runs from; empty outside a git checkout."""
    try:
        run = lambda *args: subprocess.run(  # noqa: E731
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        return {"git.commit": run("rev-parse", "HEAD"), "git.dirty": str(bool(run("status", "--porcelain")))}
    except (OSError, subprocess.SubprocessError):
        return {}


def environment() -> dict[str, str]:
    packages = ("torch", "lightning", "transformers", "mlflow")
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "command": " ".join(sys.argv),
        **{f"version.{name}": version(name) for name in packages},
    }


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys as they are typed on the command line: a union's `init_args` level is left out."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, prefix if key == "init_args" else f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def run_dir(trainer: Trainer) -> Path:
    """The folder Lightning's ModelCheckpoint uses for this run: <root>/<experiment id>/<run id>."""
    logger = trainer.logger
    root = logger.save_dir if logger is not None and logger.save_dir else trainer.default_root_dir
    if logger is None:
        return Path(root)
    return Path(root) / str(logger.name) / str(logger.version)


def mlflow_loggers(trainer: Trainer) -> list[EvfMLFlowLogger]:
    return [logger for logger in trainer.loggers if isinstance(logger, EvfMLFlowLogger)]


class RunRecord(SaveConfigCallback):
    """Writes config.yaml and environment.json into the run folder and logs both to MLflow.

    Lightning's stock MLflow logger does not store the CLI config; this does, as a YAML artifact and as
    flattened params, with the git commit and package versions as tags. At the end of fitting it tags
    the best checkpoint, logs it as an artifact, and prints the final metrics and where the run is.
    """

    def __init__(self, parser: Any, config: Any, **kwargs: Any) -> None:
        kwargs["save_to_log_dir"] = False
        super().__init__(parser, config, **kwargs)

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        text = self.parser.dump(self.config, skip_none=False)
        env = {**environment(), **git_state(Path(__file__).parent)}
        folder = run_dir(trainer)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / self.config_filename).write_text(text)
        (folder / "environment.json").write_text(json.dumps(env, indent=2))
        for logger in mlflow_loggers(trainer):
            logger.experiment.log_text(logger.run_id, text, self.config_filename)
            logger.experiment.log_dict(logger.run_id, env, "environment.json")
            # A resumed run (same run id) keeps the params it started with: MLflow refuses to change a param,
            # and a resume differs at least in ckpt_path. Its config.yaml is the latest invocation's.
            logged = logger.experiment.get_run(logger.run_id).data.params
            logger.log_hyperparams({k: v for k, v in flatten(self.config.as_dict()).items() if k not in logged})
            for key, value in env.items():
                logger.experiment.set_tag(logger.run_id, key, value)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        for logger in mlflow_loggers(trainer):
            if best:
                logger.experiment.set_tag(logger.run_id, BEST_CHECKPOINT_TAG, str(Path(best).resolve()))
                logger.experiment.log_artifact(logger.run_id, best, "checkpoints")
        print_summary(trainer, best)


def print_summary(trainer: Trainer, best_checkpoint: str) -> None:
    metrics = trainer.callback_metrics
    table = Table(title="final validation")
    table.add_column("split")
    for name in SUMMARY_METRICS:
        table.add_column(name, justify="right")
    splits = sorted({key.split("/")[1] for key in metrics if key.startswith("val/") and key.count("/") == 2})
    for split in splits:
        table.add_row(split, *(f"{float(metrics.get(f'val/{split}/{m}', float('nan'))):.4f}" for m in SUMMARY_METRICS))
    console = Console()
    console.print(table)
    for logger in mlflow_loggers(trainer):
        console.print(f"MLflow run {logger.run_id} (experiment '{logger._experiment_name}') in {logger.tracking_uri}")
        console.print(f"  browse it: mlflow ui --backend-store-uri {logger.tracking_uri} --host 127.0.0.1")
    if best_checkpoint:
        console.print(f"best checkpoint: {best_checkpoint}")
