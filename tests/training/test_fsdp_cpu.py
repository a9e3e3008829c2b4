"""Our FSDP configuration on CPU: two gloo processes train and write a sharded checkpoint, one process resumes from
it (another world size), and the consolidated file loads strictly into the model and exports."""

from __future__ import annotations

from pathlib import Path

import torch

from evf_lightning.commands.import_export import export_official
from evf_lightning.hub.consolidate import checkpoint_kind, consolidate
from evf_lightning.hub.official_folder import load_official_folder

REPO = Path(__file__).resolve().parents[2]
OVERRIDES = [
    "--trainer", str(REPO / "configs/trainer/fsdp_cpu.yaml"), "--trainer.val_check_interval", "4",
    "--trainer.limit_val_batches", "1", "--data.batch_size", "4",
]  # fmt: skip


def test_fsdp_shards_resume_at_another_world_size_and_consolidate(tmp_path, synth_root, experiment_file, evf_fit):
    config = experiment_file(tmp_path / "experiment.yaml", synth_root, "fsdp", steps=4)
    evf_fit(tmp_path, config, *OVERRIDES)
    (last,) = (tmp_path / "runs").glob("*/*/checkpoints/last.ckpt")
    assert checkpoint_kind(last) == "fsdp" and len(list(last.glob("*.distcp"))) == 2  # one shard per rank
    consolidate(last, tmp_path / "two_ranks.ckpt")

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
