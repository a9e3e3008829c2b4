"""`evf publish` against a real `mlflow server` on loopback serving (a copy of) the trained run's store."""

import base64
import json
import os
import shutil
import subprocess
import sys
import urllib.request

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from evf_lightning.cli import main
from evf_lightning.hub.model_card import CARD_FILE
from evf_lightning.hub.official_names import name_map
from evf_lightning.hub.pretrained import read_state_dict
from evf_lightning.tracking.run_record import BEST_CHECKPOINT_TAG
from evf_lightning.tracking.server import mlflow_server, model_server

# Runs in a fresh interpreter: loads the registered version and predicts the rows of a JSON file into a .npy.
LOAD_AND_PREDICT = """
import json, sys
import numpy as np, pandas as pd, mlflow.pyfunc
model = mlflow.pyfunc.load_model(sys.argv[1])
rows = pd.DataFrame(json.load(open(sys.argv[2])))
np.save(sys.argv[3], np.stack(model.predict(rows)))
"""


@pytest.fixture(scope="module")
def server(trained_run, tmp_path_factory) -> str:
    """A server over a copy of the trained run's SQLite store (the copy takes the registry's writes)."""
    folder = tmp_path_factory.mktemp("registry")
    shutil.copyfile(trained_run["tracking_uri"].removeprefix("sqlite:///"), folder / "store.db")
    with mlflow_server(f"sqlite:///{folder / 'store.db'}", folder / "artifacts") as url:
        yield url


def test_a_published_version_predicts_in_a_fresh_process_what_the_predictor_predicts(
    tmp_path, trained_run, evaluated, server, capsys, monkeypatch
):
    from evf_lightning.serve.images import read_image
    from evf_lightning.serve.predictor import load_predictor

    out = tmp_path / "published"
    run_id = trained_run["run_id"]
    args = ["--run", run_id, "--tracking_uri", server, "--name", "evf-tiny", "--out", str(out)]
    main(["publish", *args, "--hub_repo", "me/evf-tiny", "--online", "true"])
    printed = capsys.readouterr().out
    assert f"registered evf-tiny version 1 (run {run_id})" in printed
    assert "nothing was uploaded to the Hub (HF_HUB_OFFLINE=1" in printed
    assert f"hf upload me/evf-tiny {out} ." in printed
    assert "| `val/refcoco_unc_val/ciou` |" in (out / CARD_FILE).read_text()  # the card read the run via the server

    client = MlflowClient(server)
    version = client.get_model_version("evf-tiny", "1")
    run = client.get_run(run_id)
    assert version.run_id == run_id and version.source.startswith(run.info.artifact_uri)
    assert {k: float(v) for k, v in version.tags.items() if k.startswith("metric.")} == {
        f"metric.{k}": v for k, v in run.data.metrics.items()
    }
    assert version.tags["git.commit"] == run.data.tags["git.commit"]

    item = evaluated[0]
    texts = item["texts"][:2]
    encoded = base64.b64encode(item["path"].read_bytes()).decode()
    rows = {"image": [str(item["path"])] * len(texts) + [encoded], "prompt": [*texts, texts[0]]}
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    env = {**os.environ, "MLFLOW_TRACKING_URI": server, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", LOAD_AND_PREDICT, "models:/evf-tiny/1", tmp_path / "rows.json", tmp_path / "m.npy"]
    subprocess.run(command, env=env, check=True, timeout=120)
    served = np.load(tmp_path / "m.npy")
    expected = load_predictor(out, device="cpu").predict(read_image(item["path"]), texts)
    assert served.dtype == bool and 0 < expected.mean() < 1
    np.testing.assert_array_equal(served[: len(texts)], expected)
    np.testing.assert_array_equal(served[-1], expected[0])  # the base64 row: the same image

    # The same version behind `mlflow models serve`: JSON rows in over HTTP (a type-hinted model takes `inputs`),
    # the same masks out.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    records = [{"image": encoded, "prompt": text} for text in texts]
    with model_server("models:/evf-tiny/1") as url:
        request = urllib.request.Request(
            f"{url}/invocations",
            data=json.dumps({"inputs": records}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            scored = np.array(json.load(response)["predictions"])
    np.testing.assert_array_equal(scored, expected)

    # Bad rows are refused by name: MLflow checks them against the schema, the model decodes the image.
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    from evf_lightning.serve.images import ImageReadError

    # mlflow's process-wide URI (an in-process `evf fit` sets it) wins over the environment: set it, then put it back.
    previous = mlflow.get_tracking_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    mlflow.set_tracking_uri(server)
    try:
        model = mlflow.pyfunc.load_model("models:/evf-tiny/1")
    finally:
        mlflow.set_tracking_uri(previous)
    with pytest.raises(MlflowException, match="prompt"):
        model.predict([{"image": str(item["path"])}])
    with pytest.raises(ImageReadError, match=r"row 0: image 'no/such\.png' is neither an existing file nor base64"):
        model.predict([{"image": "no/such.png", "prompt": texts[0]}])
    with pytest.raises(ImageReadError, match=r"row 0: the image bytes do not decode"):
        model.predict([{"image": base64.b64encode(b"not an image").decode(), "prompt": texts[0]}])


def test_a_run_whose_checkpoint_file_is_gone_publishes_its_logged_checkpoint(tmp_path, trained_run, server, capsys):
    client = MlflowClient(server)
    run_id = trained_run["run_id"]
    tagged = client.get_run(run_id).data.tags[BEST_CHECKPOINT_TAG]
    client.set_tag(run_id, BEST_CHECKPOINT_TAG, str(tmp_path / "moved.ckpt"))
    try:
        out = tmp_path / "published"
        main(["publish", "--run", run_id, "--tracking_uri", server, "--out", str(out), "--hub_repo", "me/x"])
    finally:
        client.set_tag(run_id, BEST_CHECKPOINT_TAG, tagged)
    printed = capsys.readouterr().out
    assert "registered evf-quickstart version 1" in printed and "(--online was not given)" in printed
    assert client.get_model_version("evf-quickstart", "1").run_id == run_id
    # The exported weights are the logged checkpoint's, which is the tagged file's.
    state = torch.load(tagged, weights_only=True)["state_dict"]
    official = name_map("sam").to_official({k.removeprefix("model."): v for k, v in state.items()})
    written = read_state_dict(out)
    assert set(written) == set(official) and all(torch.equal(written[k], t) for k, t in official.items())


def test_unknown_runs_runs_without_a_checkpoint_and_used_folders_are_refused_by_name(tmp_path, server, trained_run):
    with pytest.raises(SystemExit, match=r"evf publish: MLflow at .* has no run '0123abc'"):
        main(["publish", "--run", "0123abc", "--tracking_uri", server])
    client = MlflowClient(server)
    empty = client.create_run(client.get_run(trained_run["run_id"]).info.experiment_id).info.run_id
    with pytest.raises(SystemExit, match=rf"run {empty} has no checkpoint: its tag {BEST_CHECKPOINT_TAG} is None"):
        main(["publish", "--run", empty, "--tracking_uri", server])
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("")
    used = ["--out", str(tmp_path / "used")]
    with pytest.raises(SystemExit, match=r"evf publish: .*used is not empty; export into a new folder"):
        main(["publish", "--run", trained_run["run_id"], "--tracking_uri", server, *used])
