"""Every backbone family trains a few steps on the generated data, and only what its recipe trains moves."""

from pathlib import Path

import pytest
import torch

from evf_lightning.models.evf import EvfModel, EvfModelConfig
from evf_lightning.training.lightning_cli import EvfCLI
from evf_lightning.training.trainable import TrainableParts, apply_trainable, check_frozen

REPO = Path(__file__).resolve().parents[2]

# tiny model file -> the paper's freeze policy for that family (flags for TrainableParts)
RECIPES = {
    "evf_tiny": {"image_encoder": False, "mask_decoder": True, "no_mask_embed": True},
    # SAM-2 stays wholly frozen in EVF-SAM2 (reference/checkpoints.md §9): only BEiT-3 and the projector learn.
    "evf_sam2_tiny": {"image_encoder": False, "mask_decoder": False, "no_mask_embed": False},
    "evf_effi_tiny": {"image_encoder": False, "mask_decoder": True, "no_mask_embed": True},
}


@pytest.mark.parametrize("model_file", RECIPES)
def test_only_the_recipe_trainable_parameters_change(model_file, synth_root, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    trainable = [f"--model.trainable.{part}={str(flag).lower()}" for part, flag in RECIPES[model_file].items()]
    cli = EvfCLI(
        args=[
            "--config", str(REPO / "configs/experiments/quickstart.yaml"),
            "--model.model", str(REPO / "configs/model" / f"{model_file}.yaml"),
            *trainable,
            "--data.root", str(synth_root), "--data.tokenizer", str(synth_root / "tokenizer"),
            "--data.num_workers", "0", "--data.batch_size", "4",
            "--trainer.max_steps", "3", "--trainer.limit_val_batches", "0", "--trainer.logger", "false",
            "--trainer.default_root_dir", str(tmp_path),
        ],
        run=False,
    )  # fmt: skip
    model = cli.model.model
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    cli.trainer.fit(cli.model, cli.datamodule)
    assert cli.trainer.global_step == 3

    moved = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    trainable_names = {name for name, p in model.named_parameters() if p.requires_grad}
    assert moved <= trainable_names, sorted(moved - trainable_names)[:5]
    # Not every trainable tensor moves: the forward never touches e.g. the IoU head or BEiT-3's mask token.
    assert any(n.startswith("prompt_encoder.beit3.") for n in moved) and any(n.startswith("projector.") for n in moved)
    assert not any(n.startswith("image_backbone.image_encoder.") for n in moved)
    decoder_moved = any(n.startswith("image_backbone.mask_decoder.") for n in moved)
    assert decoder_moved == RECIPES[model_file]["mask_decoder"]

    # Frozen parts pay for nothing: no optimizer state, no gradient.
    optimizer = cli.trainer.optimizers[0]
    in_optimizer = {p for group in optimizer.param_groups for p in group["params"]}
    trainable_params = {p for p in model.parameters() if p.requires_grad}
    assert in_optimizer == trainable_params and set(optimizer.state) <= trainable_params
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)


def test_a_parameter_unfrozen_behind_the_recipe_is_refused():
    with torch.device("meta"):
        model = EvfModel(EvfModelConfig.evf_sam())
    parts = TrainableParts()
    apply_trainable(model, parts)
    check_frozen(model, parts)
    model.image_backbone.image_encoder.neck.conv1.weight.requires_grad_(True)
    with pytest.raises(
        ValueError, match=r"requires_grad disagrees .* 1 parameters, e.g. \['image_backbone.image_encoder.neck"
    ):
        check_frozen(model, parts)
