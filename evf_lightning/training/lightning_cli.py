"""LightningCLI for EVF: one LightningModule for every variant, one DataModule, typed configs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from jsonargparse import ArgumentParser, Namespace, lazy_instance, set_parsing_settings
from lightning import Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import TorchCheckpointIO

from evf_lightning.data.datamodule import EvfDataModule
from evf_lightning.models.evf import BACKBONES, PROMPT_ENCODERS
from evf_lightning.tracking.logger import EvfMLFlowLogger
from evf_lightning.tracking.run_record import RunRecord, mlflow_loggers
from evf_lightning.training.checkpoint_io import AtomicCheckpointIO
from evf_lightning.training.module import EvfLitModule
from evf_lightning.training.resume import ResumeState, checkpoint_mlflow_run_id

# jsonargparse tries a union's types left to right on the override alone, so without this a dotted override of a
# field two prompt encoders share (`--model.model.prompt_encoder.fusion late` on a CLIP config) silently built the
# first type, BEiT-3, from its defaults. As subclass types, the override edits the config the YAML chose, and a
# field that config lacks is an error.
set_parsing_settings(subclasses_enabled=[*PROMPT_ENCODERS, *BACKBONES])

TRAINER_DEFAULTS: dict[str, Any] = {
    "logger": lazy_instance(EvfMLFlowLogger),
    "default_root_dir": "runs",
    "callbacks": [lazy_instance(LearningRateMonitor, logging_interval="step")],
}


class EvfCLI(LightningCLI):
    """`evf fit|validate|test|predict --config experiment.yaml [--key value ...]`.

    The data module's preprocessing is linked to the model config, so image sizes and resize mode can
    only be set in one place and can never disagree.
    """

    def __init__(self, args: list[str] | None = None, run: bool = True, instantiate: bool = True) -> None:
        self._instantiate = instantiate
        super().__init__(
            EvfLitModule,
            EvfDataModule,
            save_config_callback=RunRecord,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"parser_mode": "omegaconf"},
            trainer_defaults=TRAINER_DEFAULTS,
            args=args,
            run=run,
        )

    def instantiate_classes(self) -> None:
        """Skipped with `instantiate=False` (and `run=False`): config checks parse and validate only."""
        if self._instantiate:
            super().instantiate_classes()

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """With `--trainer.logger false` the default LR monitor has nowhere to log; Lightning would refuse to start.

        Resume must not depend on what a config lists, so `ResumeState` and atomic checkpoint files are always on.
        """
        trainer = super().instantiate_trainer(**kwargs)
        if not trainer.loggers:
            trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, LearningRateMonitor)]
        if not any(isinstance(c, ResumeState) for c in trainer.callbacks):
            trainer.callbacks.append(ResumeState())
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer

    def before_fit(self) -> None:
        """Resuming from a checkpoint continues its MLflow run, so one run holds the whole training."""
        ckpt_path = self.config[self.subcommand].get("ckpt_path")
        run_id = checkpoint_mlflow_run_id(ckpt_path) if ckpt_path else None
        if run_id:
            for logger in mlflow_loggers(self.trainer):
                logger.continue_run(run_id)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Two checkpoints: the best by val/ciou, and the latest at every validation whatever its score.
        # Lightning's own `save_last` only writes when a new best is saved, which loses steps on resume.
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(ModelCheckpoint, "last_checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/ciou",
                "checkpoint.mode": "max",
                "checkpoint.filename": "best-step{step}",
                "checkpoint.auto_insert_metric_name": False,
                "last_checkpoint.monitor": None,
                "last_checkpoint.save_top_k": 1,
                "last_checkpoint.filename": "last",
                "last_checkpoint.enable_version_counter": False,
            }
        )
        backbone = "model.model.image_backbone"
        parser.link_arguments(backbone, "data.sam_image_size", compute_fn=_backbone_field("image_size"))
        parser.link_arguments(backbone, "data.sam_resize", compute_fn=_backbone_field("resize"))
        parser.link_arguments("model.model.prompt_encoder", "data.beit_image_size", compute_fn=_prompt_image_size)


def _parse_as(tree: Any, kind: type) -> Any:
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--value", type=kind)
    tree = tree.as_dict() if isinstance(tree, Namespace) else dict(tree)
    return parser.instantiate_classes(parser.parse_object({"value": tree})).value


def prompt_encoder_config(tree: Any) -> Any:
    """A parsed `model.model.prompt_encoder` subtree as its typed config, the class chosen by its `kind`."""
    from evf_lightning.models.evf import PROMPT_ENCODER_KINDS

    tree = tree.as_dict() if isinstance(tree, Namespace) else dict(tree)
    tree = tree.get("init_args", tree)
    kind = tree.get("kind", "beit3")
    if kind not in PROMPT_ENCODER_KINDS:
        raise ValueError(f"model.model.prompt_encoder.kind {kind!r} is not one of {list(PROMPT_ENCODER_KINDS)}")
    return _parse_as(tree, PROMPT_ENCODER_KINDS[kind])


def model_config(tree: Any) -> Any:
    """A parsed `model.model` subtree as an EvfModelConfig, without building any module."""
    from evf_lightning.models.evf import EvfModelConfig

    tree = tree.as_dict() if isinstance(tree, Namespace) else dict(tree)
    prompt_encoder = prompt_encoder_config(tree.pop("prompt_encoder", {}))
    return replace(_parse_as(tree, EvfModelConfig), prompt_encoder=prompt_encoder)


def _prompt_image_size(prompt_encoder: Any) -> int:
    """The small image the prompt encoder reads, whichever kind it is."""
    return prompt_encoder_config(prompt_encoder).image_size


def _backbone_field(name: str) -> Callable[[Any], Any]:
    """Read a field of the parsed backbone config, which a union of dataclasses wraps in `init_args`."""

    def read(backbone: Any) -> Any:
        return getattr(getattr(backbone, "init_args", backbone), name)

    return read
