"""`evf fit` end to end on generated data: MLflow record, run folder, grounding, resume from last.ckpt.

One short real training run (tiny model, CPU) is shared by the tests of this module.
"""

from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from evf_lightning.cli import main
from evf_lightning.commands.grounding import grounding
from evf_lightning.data.refer import ReferDataset
from evf_lightning.tracking.run_record import BEST_CHECKPOINT_TAG

STEPS = 500


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synth_root, experiment_file):
    folder = tmp_path_factory.mktemp("fit")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.chdir(folder)
        config = experiment_file(folder / "experiment.yaml", synth_root, "e2e")
        main(["fit", "--config", str(config)])
        result = grounding(experiment=config, output=folder / "grounding.json", by_cue=True)
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
    """The acceptance property at small scale: shuffling prompts across the split costs cIoU.

    A model that ignores the text scores the same either way (a gap of exactly 0). After 500 steps on 96 images
    the gap measured 0.05 (2 threads) and 0.12 (1 thread), and 0.07-0.10 with 750 steps or 400 images (true cIoU
    0.28-0.32 in all), so the margin here is loose; `evf grounding` on the quickstart asks for 0.20 at full scale.
    """
    result = trained["grounding"]
    assert result["true/ciou"] > 0.22
    assert result["true/ciou"] - result["shuffled/ciou"] > 0.03
    assert (trained["folder"] / "grounding.json").is_file()


def test_grounding_scores_each_set_of_cues_apart_and_the_sets_make_up_the_split(trained, synth_root):
    result = trained["grounding"]
    prefix = "by_cue/refcoco_unc_val/"
    counts = {
        key[len(prefix) : -len("/expressions")]: n
        for key, n in result.items()
        if key.startswith(prefix) and key.endswith("/expressions")
    }
    assert {"colour", "shape", "size", "position"} <= set(counts)
    val = ReferDataset(synth_root, "refcoco", "unc", "val")
    assert sum(counts.values()) == sum(len(val.expressions(index)) for index in range(len(val)))
    # gIoU is a mean over expressions, so the sets' gIoUs weighted by their sizes give the split's
    pooled = sum(result[f"{prefix}{cues}/giou"] * n for cues, n in counts.items()) / sum(counts.values())
    assert pooled == pytest.approx(result["true/giou"], abs=1e-5)


def test_resume_from_last_checkpoint_continues_the_step_count_in_the_same_run(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained["uri"])
    monkeypatch.chdir(trained["folder"])
    _, (run,) = finished_runs(trained["uri"], "e2e")
    last = trained["folder"] / "runs" / run.info.experiment_id / run.info.run_id / "checkpoints" / "last.ckpt"
    main(["fit", "--config", str(trained["config"]), "--trainer.max_steps", str(STEPS + 20), "--ckpt_path", str(last)])
    client, runs = finished_runs(trained["uri"], "e2e")
    assert [r.info.run_id for r in runs] == [run.info.run_id]  # the resumed fit logs into the run it continues
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
    assert len(steps) == len(set(steps)) and max(steps) >= STEPS  # continued where the first run stopped
