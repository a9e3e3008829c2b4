"""Training-step cost of one experiment config against another, measured side by side in one run.

Tuning the quickstart trades accuracy for time, and on a shared CPU absolute timings mean little. This
runs real `Trainer.fit` steps (data loading, forward, backward, optimizer) of both configs in alternating
rounds, so that whatever else loads the machine loads both alike, and prints seconds per step and the
ratio. The first steps of each round (start-up, first batches) are not counted.

    .venv/bin/python scripts/bench_step_cost.py configs/experiments/quickstart.yaml OLD.yaml \
        [--rounds 3] [--steps 20] [--skip 3] [--set key=value ...]

Each config is an experiment YAML as `evf fit --config` takes it; `--set` overrides apply to the first
(the candidate), e.g. `--set model.model.prompt_encoder.beit3.depth=4`. Needs the data the configs name
(`evf data synth data/synth`).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from evf_lightning.training.lightning_cli import EvfCLI


class StepTimer(Callback):
    """Wall seconds from one batch's end to the next (loading included), after the first `skip` batches of the
    fit, counted across epochs (a `skip` past the first epoch times what a data cache makes of later ones)."""

    def __init__(self, skip: int) -> None:
        self.skip = max(skip, 1)  # the first batch has no previous end to count from
        self.seconds: list[float] = []
        self._seen = 0
        self._last = 0.0

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        now = time.perf_counter()
        if self._seen >= self.skip:
            self.seconds.append(now - self._last)
        self._seen += 1
        self._last = now


def time_steps(config: str, overrides: list[str], steps: int, skip: int) -> list[float]:
    """Seconds per step of `steps` fit steps (after `skip` uncounted ones), no logging or checkpoints."""
    args = ["--config", config, *[f"--{item}" for item in overrides]]
    args += ["--trainer.max_steps", str(steps + skip), "--trainer.logger", "false", "--trainer.limit_val_batches", "0"]
    args += ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    cli = EvfCLI(args=args, run=False)
    cli.trainer.callbacks = [c for c in cli.trainer.callbacks if not isinstance(c, ModelCheckpoint)]
    timer = StepTimer(skip)
    cli.trainer.callbacks.append(timer)
    cli.trainer.fit(cli.model, cli.datamodule)
    return timer.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("candidate", help="experiment YAML whose cost is measured")
    parser.add_argument("reference", help="experiment YAML it is compared against")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of each config")
    parser.add_argument("--steps", type=int, default=20, help="counted steps per round")
    parser.add_argument("--skip", type=int, default=3, help="uncounted steps at the start of each round")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override on the candidate")
    options = parser.parse_args()
    seconds: dict[str, list[float]] = {"candidate": [], "reference": []}
    for _ in range(options.rounds):
        seconds["candidate"] += time_steps(options.candidate, options.set, options.steps, options.skip)
        seconds["reference"] += time_steps(options.reference, [], options.steps, options.skip)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    for name, median in medians.items():
        print(f"{name}: median {median:.3f} s/step over {len(seconds[name])} steps")
    print(f"cost ratio candidate / reference: {medians['candidate'] / medians['reference']:.2f}")


if __name__ == "__main__":
    main()
