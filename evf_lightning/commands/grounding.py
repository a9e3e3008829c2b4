"""Does the model read the expression? Evaluate with the true prompts and with shuffled ones."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.table import Table

    from evf_lightning.data.batch import ReferBatch
    from evf_lightning.training.module import EvfLitModule

# The figures both tables show, by their metric names.
HEADLINE_METRICS = ("ciou", "giou", "precision_0.5")


def grounding(
    *, experiment: Path, ckpt_path: str | None = None, output: Path | None = None, by_cue: bool = False
) -> dict[str, float]:
    """Compare validation metrics with true prompts against prompts shuffled across the split.

    A model that grounds language loses most of its cIoU when each expression is swapped for another
    one of the split; a model that only finds salient objects does not. Without `ckpt_path`, the best
    checkpoint of the newest finished MLflow run of that experiment is used.

    Args:
        experiment: the experiment YAML the model was trained with.
        ckpt_path: the checkpoint to evaluate.
        output: where to write the figures as JSON (optional).
        by_cue: also score apart the expressions of each set of cues they name (colour, shape, size,
            position, or several), read from the words of the generated data (`evf data synth`): which
            words has the model learned? Keys `by_cue/<val split>/<cues>/<metric>`.
    """
    from rich.console import Console
    from rich.table import Table

    from evf_lightning.tracking.runs import latest_best_checkpoint
    from evf_lightning.training.lightning_cli import EvfCLI

    cli = EvfCLI(args=["--config", str(experiment)], run=False)
    logger = cli.trainer.logger
    ckpt_path = ckpt_path or latest_best_checkpoint(logger.tracking_uri, logger._experiment_name)
    cli.trainer.loggers = []
    results: dict[str, float] = {}
    for label, shuffle in (("true", False), ("shuffled", True)):
        cli.datamodule.shuffle_eval_prompts = shuffle
        metrics = cli.trainer.validate(cli.model, cli.datamodule, ckpt_path=ckpt_path, verbose=False)[0]
        results.update(
            {f"{label}/{key.split('/')[-1]}": value for key, value in metrics.items() if key.count("/") == 1}
        )
    table = Table(title=f"grounding check: {Path(ckpt_path).name}")
    for column in ("metric", "true prompts", "shuffled prompts", "difference"):
        table.add_column(column, justify="right")
    for name in HEADLINE_METRICS:
        true, shuffled = results[f"true/{name}"], results[f"shuffled/{name}"]
        table.add_row(name, f"{true:.4f}", f"{shuffled:.4f}", f"{true - shuffled:+.4f}")
    Console().print(table)
    if by_cue:
        cli.datamodule.shuffle_eval_prompts = False
        cli.datamodule.setup("validate")
        for name, loader in zip(cli.datamodule.val_names, cli.datamodule.val_dataloader(), strict=True):
            scores = scores_by_cue(cli.model, loader)
            results.update({f"by_cue/{name}/{cues}/{k}": v for cues, row in scores.items() for k, v in row.items()})
            Console().print(_cue_table(name, scores))
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps({"checkpoint": ckpt_path, **results}, indent=2))
    return results


def scores_by_cue(module: EvfLitModule, loader: Iterable[ReferBatch]) -> dict[str, dict[str, float]]:
    """cIoU, gIoU, P@t and the number of expressions for each set of cues the expressions name, on the CPU
    (the generated data is small); "none" holds expressions that name no cue of the generated language."""
    import torch

    from evf_lightning.data.synthetic import expression_cues
    from evf_lightning.training.metrics import ReferringSegmentationMetrics, logits_to_masks

    metrics: dict[str, ReferringSegmentationMetrics] = {}
    module = module.cpu().eval()
    with torch.inference_mode():
        for batch in loader:
            masks = logits_to_masks(module.full_resolution_logits(batch, module(batch)))
            preds = [pred for image in masks for pred in image]
            targets = [target.bool() for image in batch.masks for target in image]
            for text, pred, target in zip(batch.texts, preds, targets, strict=True):
                cues = "+".join(expression_cues(text)) or "none"
                metrics.setdefault(cues, ReferringSegmentationMetrics()).update([pred], [target])
    return {
        cues: {**{key: float(value) for key, value in metric.compute().items()}, "expressions": float(metric.count)}
        for cues, metric in sorted(metrics.items(), key=lambda item: (item[0].count("+"), item[0]))
    }


def _cue_table(split: str, scores: dict[str, dict[str, float]]) -> Table:
    from rich.table import Table

    table = Table(title=f"{split}: true prompts by the cues they name")
    for column in ("cues", "expressions", *HEADLINE_METRICS):
        table.add_column(column, justify="right")
    for cues, row in scores.items():
        table.add_row(cues, f"{row['expressions']:.0f}", *(f"{row[k]:.4f}" for k in HEADLINE_METRICS))
    return table
