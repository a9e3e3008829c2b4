"""`evf publish`: a run's model exported with its card, registered in the MLflow Model Registry, ready for the Hub."""

from __future__ import annotations

import os
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# What the pyfunc needs to run, pinned to what registered it (explicit, so MLflow captures no environment).
PYFUNC_PACKAGES = (
    "evf-lightning", "mlflow", "torch", "transformers", "safetensors", "sentencepiece", "pillow", "pydantic",
)  # fmt: skip


def publish(
    *,
    run: str,
    tracking_uri: str | None = None,
    name: str | None = None,
    hub_repo: str | None = None,
    out: Path | None = None,
    online: bool = False,
) -> int:
    """Register a run's model in the MLflow Model Registry (a pyfunc of image + prompt -> masks), ready for the Hub.

    Finds the run's best checkpoint (the file its evf.best_checkpoint tag names, else its logged checkpoint),
    exports it with its model card (`evf export`) to OUT, and registers OUT as a new version of the pyfunc model
    NAME, linked to the run and tagged with its metrics and tags. With --hub_repo the folder is ready to push:
    nothing is uploaded unless --online is given and HF_HUB_OFFLINE is not 1 (evf sets it unless you set
    HF_HUB_OFFLINE=0); otherwise the command that pushes it is printed.

    Args:
        run: the MLflow run id of an `evf fit`.
        tracking_uri: the MLflow store; default: MLFLOW_TRACKING_URI, else mlflow.db in the working directory.
        name: registered model name; default: evf-<the run's experiment name>.
        hub_repo: Hugging Face Hub repository (OWNER/NAME) to push the folder to.
        out: folder to export into (must not exist or be empty); default: published/<name>-<run id's first 8>.
        online: upload to --hub_repo now (needs HF_HUB_OFFLINE=0 and a Hub token).

    Returns:
        The registered version's number.
    """
    from mlflow.exceptions import MlflowException

    from evf_lightning.commands.import_export import export_official
    from evf_lightning.serve.pyfunc import MODEL_ARTIFACT, MODEL_CODE
    from evf_lightning.tracking.logger import default_tracking_uri
    from evf_lightning.tracking.registry import experiment_name, register_pyfunc_version, run_checkpoint
    from evf_lightning.tracking.runs import RunLookupError, read_run

    tracking_uri = tracking_uri or default_tracking_uri()
    try:
        record = read_run(tracking_uri, run)
        name = name or f"evf-{experiment_name(tracking_uri, record)}"
        out = out or Path("published") / f"{name}-{run[:8]}"
        with tempfile.TemporaryDirectory() as workdir:
            ckpt = run_checkpoint(tracking_uri, record, Path(workdir))
            export_official(ckpt, out, tracking_uri=tracking_uri)
    except (RunLookupError, MlflowException, FileExistsError) as error:
        raise SystemExit(f"evf publish: {error}") from error
    model_version = register_pyfunc_version(
        tracking_uri,
        record,
        name,
        MODEL_CODE,
        {MODEL_ARTIFACT: str(out.resolve())},
        pip_requirements(),
    )
    number = int(model_version.version)
    print(f"registered {name} version {number} (run {run}) in {tracking_uri}")
    print(f"load it with MLFLOW_TRACKING_URI={tracking_uri}:")
    print(f'  model = mlflow.pyfunc.load_model("models:/{name}/{number}")')
    print('  masks = model.predict([{"image": PATH_OR_BASE64, "prompt": TEXT}])  # one bool [H, W] array per row')
    if hub_repo:
        push_to_hub(out, hub_repo, online)
    return number


def pip_requirements() -> list[str]:
    """The pyfunc's packages at the versions installed here (a package not installed is left unpinned)."""
    pinned = []
    for package in PYFUNC_PACKAGES:
        try:
            pinned.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            pinned.append(package)
    return pinned


def push_to_hub(folder: Path, repo: str, online: bool) -> None:
    """Upload `folder` to the Hub repository only when asked to and allowed online; else say how to push it."""
    later = f"hf upload {repo} {folder.resolve()} ."
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if not online or offline:
        why = "--online was not given" if not online else "HF_HUB_OFFLINE=1 (evf's default; set HF_HUB_OFFLINE=0)"
        print(f"nothing was uploaded to the Hub ({why}); {folder} is ready, push it with:\n  {later}")
        return
    from huggingface_hub import create_repo, upload_folder
    from huggingface_hub.errors import HfHubHTTPError

    try:
        create_repo(repo, exist_ok=True)
        commit = upload_folder(repo_id=repo, folder_path=folder)
    except (HfHubHTTPError, OSError) as error:
        print(f"nothing was uploaded to the Hub ({error}); push {folder} later with:\n  {later}", file=sys.stderr)
        return
    print(f"uploaded {folder} to the Hub: {commit.commit_url}")
