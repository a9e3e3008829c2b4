"""Fixtures of the serving tests: the eval path's masks of the shared trained run, to predict against."""

import numpy as np
import pytest


@pytest.fixture(scope="session")
def evaluated(trained_run: dict) -> list[dict]:
    """Per val image of the trained run (in loader order): its file, the texts the model read and the masks that
    `predict_step`, the evaluation path, gives for them (bool [n, H, W])."""
    import torch

    from evf_lightning.training.lightning_cli import EvfCLI

    cli = EvfCLI(args=[*trained_run["args"], "--trainer.logger", "false"], run=False)
    cli.model.model.load_state_dict(trained_run["state"])
    cli.model.eval()
    datamodule = cli.datamodule
    datamodule.setup("validate")
    (dataset,) = datamodule.val_sets
    (loader,) = datamodule.val_dataloader()
    out, index = [], 0
    with torch.inference_mode():
        for batch in loader:
            masks = cli.model.predict_step(batch, 0)
            for image_masks in masks:
                reader, local = dataset.locate(index)
                texts = reader.texts(local, normalise_text=dataset.normalise_text)
                out.append({"path": reader.image_path(local), "texts": texts, "masks": image_masks.numpy()})
                index += 1
    assert index == len(dataset)
    found = np.concatenate([m["masks"].reshape(-1) for m in out])
    assert 0.001 < found.mean() < 0.999, "the trained run predicts trivial masks; the comparison would be vacuous"
    return out
