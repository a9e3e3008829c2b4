"""Our FSDP configuration on CPU: two gloo processes train and write a sharded checkpoint, one process resumes from
it (another world size), and the consolidated file loads strictly into the model and exports; the sharded best
checkpoint MLflow logged publishes from the store alone."""

from __future__ import annotations

from pathlib import Path

import torch
from mlflow.tracking import MlflowClient

from evf_lightning.cli import main
from evf_lightning.commands.import_export import export_official
from evf_lightning.hub.consolidate import checkpoint_kind, consolidate
from evf_lightning.hub.official_folder import load_official_folder
from evf_lightning.hub.official_names import name_map
from evf_lightning.hub.pretrained import read_state_dict
from evf_lightning.tracking.run_record import BEST_CHECKPOINT_TAG

REPO = Path(__file__).resolve().parents[2]
OVERRIDES = [
    "--trainer", str(REPO / "configs/trainer/fsdp_cpu.yaml"), "--trainer.val_check_interval", "4",
    "--trainer.limit_val_batches", "1", "--data.batch_size", "4",
]  # fmt: skip


def test_fsdp_shards_resume_at_another_world_size_and_publish(tmp_path, synth_root, experiment_file, evf_fit):
    config = experiment_file(tmp_path / "experiment.yaml", synth_root, "fsdp", steps=4)
    evf_fit(tmp_path, config, *OVERRIDES)
    (last,) = (tmp_path / "runs").glob("*/*/checkpoints/last.ckpt")
    assert checkpoint_kind(last) == "fsdp" and len(list(last.glob("*.distcp"))) == 2  # one shard per rank
    consolidate(last, tmp_path / "two_ranks.ckpt")
    publishes_the_logged_sharded_checkpoint(tmp_path)

    evf_fit(
        tmp_path, config, *OVERRIDES, "--trainer.devices", "1", "--trainer.max_steps", "8", "--ckpt_path", str(last)
    )
    out = consolidate(last, tmp_path / "consolidated.ckpt")
    assert checkpoint_kind(out) == "file"
    after, before = (torch.load(p, map_location="cpu", weights_only=True) for p in (out, tmp_path / "two_ranks.ckpt"))
    assert (before["global_step"], after["global_step"]) == (4, 8)

    moved = [k for k, v in before["state_dict"].items() if not torch.equal(v, after["state_dict"][k])]
    assert moved  # the resumed single process trained on

    names = export_official(out, tmp_path / "exported", tokenizer=synth_root / "tokenizer", run_config=config)
    assert "model.safetensors" in names
    model = load_official_folder(tmp_path / "exported")  # strict: every weight whole and under its name
    exported = model.state_dict()
    for key, value in after["state_dict"].items():
        assert torch.equal(exported[key.removeprefix("model.")], value), key


def publishes_the_logged_sharded_checkpoint(folder: Path) -> None:
    """With the run folder gone from reach (its tag points nowhere), `evf publish` downloads the sharded best
    checkpoint MLflow logged as a folder artifact and exports exactly its weights."""
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    tagged = Path(run.data.tags[BEST_CHECKPOINT_TAG])
    assert checkpoint_kind(tagged) == "fsdp"
    assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")] == [f"checkpoints/{tagged.name}"]
    expected = torch.load(consolidate(tagged, folder / "best.ckpt"), weights_only=True)["state_dict"]
    client.set_tag(run.info.run_id, BEST_CHECKPOINT_TAG, str(folder / "moved.ckpt"))
    main(["publish", "--run", run.info.run_id, "--tracking_uri", uri, "--out", str(folder / "published")])
    official = name_map("sam").to_official({k.removeprefix("model."): v for k, v in expected.items()})
    written = read_state_dict(folder / "published")
    assert set(written) == set(official) and all(torch.equal(written[k], t) for k, t in official.items())
    assert client.get_model_version(f"evf-{client.get_experiment(run.info.experiment_id).name}", "1").run_id == (
        run.info.run_id
    )
