"""`evf fit` end to end on generated data: MLflow record, run folder, grounding, resume from last.ckpt.

One short real training run (tiny model, CPU) is shared by the tests of this module.
"""

from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from evf_lightning.cli import main
from evf_lightning.commands.grounding import grounding
from evf_lightning.tracking.run_record import BEST_CHECKPOINT_TAG

REPO = Path(__file__).resolve().parents[2]
STEPS = 500


def write_experiment(path: Path, synth_root: Path, name: str, steps: int = STEPS) -> Path:
    experiment = {
        "seed_everything": 0,
        "model": {
            "model": str(REPO / "configs/model/evf_tiny.yaml"),
            "optimizer": {"lr": 2.0e-3, "warmup_steps": 50},
            # from scratch: the random image encoder must train too (the paper freezes a pretrained one)
            "trainable": {"image_encoder": True},
        },
        "data": {
            "root": str(synth_root),
            "tokenizer": str(synth_root / "tokenizer"),
            "train": [{"dataset": "refcoco", "split_by": "unc", "split": "train"}],
            "val": [{"dataset": "refcoco", "split_by": "unc", "split": "val"}],
            "batch_size": 16,
            "eval_batch_size": 16,
            "num_workers": 0,
        },
        "trainer": {
            "accelerator": "cpu",
            "max_steps": steps,
            "val_check_interval": steps // 2,
            "check_val_every_n_epoch": None,
            "log_every_n_steps": 10,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "default_root_dir": str(path.parent / "runs"),
            "logger": {
                "class_path": "evf_lightning.tracking.logger.EvfMLFlowLogger",
                "init_args": {"experiment_name": name},
            },
        },
    }
    path.write_text(yaml.safe_dump(experiment))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synth_root):
    folder = tmp_path_factory.mktemp("fit")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.chdir(folder)
        config = write_experiment(folder / "experiment.yaml", synth_root, "e2e")
        main(["fit", "--config", str(config)])
        result = grounding(experiment=config, output=folder / "grounding.json")
    return {"folder": folder, "uri": uri, "config": config, "grounding": result}


def finished_runs(uri: str, name: str):
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    return client, client.search_runs([experiment.experiment_id])


def test_mlflow_holds_config_commit_metrics_and_best_checkpoint(trained):
    client, runs = finished_runs(trained["uri"], "e2e")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["model.model.image_backbone.width"] == "64"
    assert run.data.params["data.batch_size"] == "16"
    assert len(run.data.tags["git.commit"]) == 40
    config_text = Path(client.download_artifacts(run.info.run_id, "config.yaml", str(trained["folder"]))).read_text()
    assert yaml.safe_load(config_text)["trainer"]["max_steps"] == STEPS
    losses = client.get_metric_history(run.info.run_id, "train/loss")
    assert len(losses) >= STEPS // 10 - 1 and len({m.step for m in losses}) == len(losses)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/ciou")] == [STEPS // 2 - 1, STEPS - 1]
    best = Path(run.data.tags[BEST_CHECKPOINT_TAG])
    assert best.is_file() and best.suffix == ".ckpt"
    logged = [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")]
    assert logged == [f"checkpoints/{best.name}"]


def test_run_folder_is_self_describing(trained):
    _, (run,) = finished_runs(trained["uri"], "e2e")
    folder = trained["folder"] / "runs" / run.info.experiment_id / run.info.run_id
    assert (folder / "config.yaml").is_file() and (folder / "environment.json").is_file()
    assert (folder / "checkpoints" / "last.ckpt").is_file()


def test_model_reads_the_expression(trained):
    """The acceptance property at small scale: shuffling prompts across the split costs cIoU."""
    result = trained["grounding"]
    assert result["true/ciou"] > 0.25
    assert result["true/ciou"] - result["shuffled/ciou"] > 0.1
    assert (trained["folder"] / "grounding.json").is_file()


def test_resume_from_last_checkpoint_continues_the_step_count(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained["uri"])
    monkeypatch.chdir(trained["folder"])
    _, (run,) = finished_runs(trained["uri"], "e2e")
    last = trained["folder"] / "runs" / run.info.experiment_id / run.info.run_id / "checkpoints" / "last.ckpt"
    main(["fit", "--config", str(trained["config"]), "--trainer.max_steps", str(STEPS + 20), "--ckpt_path", str(last)])
    client, runs = finished_runs(trained["uri"], "e2e")
    resumed = max(runs, key=lambda r: r.info.start_time)
    steps = [m.step for m in client.get_metric_history(resumed.info.run_id, "train/loss")]
    assert steps and min(steps) >= STEPS  # continued where the first run stopped, no step repeated
