"""Does the model read the expression? Evaluate with the true prompts and with shuffled ones."""

from __future__ import annotations

import json
from pathlib import Path


def grounding(*, experiment: Path, ckpt_path: str | None = None, output: Path | None = None) -> dict[str, float]:
    """Compare validation metrics with true prompts against prompts shuffled across the split.

    A model that grounds language loses most of its cIoU when each expression is swapped for another
    one of the split; a model that only finds salient objects does not. Without `ckpt_path`, the best
    checkpoint of the newest finished MLflow run of that experiment is used.

    Args:
        experiment: the experiment YAML the model was trained with.
        ckpt_path: the checkpoint to evaluate.
        output: where to write the figures as JSON (optional).
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
    for name in ("ciou", "giou", "precision_0.5"):
        true, shuffled = results[f"true/{name}"], results[f"shuffled/{name}"]
        table.add_row(name, f"{true:.4f}", f"{shuffled:.4f}", f"{true - shuffled:+.4f}")
    Console().print(table)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps({"checkpoint": ckpt_path, **results}, indent=2))
    return results
