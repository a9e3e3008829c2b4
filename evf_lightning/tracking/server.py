"""Start and stop real MLflow servers on loopback: the tracking server (SQL backend store, artifact root) and
`mlflow models serve` of a registered model."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def server_command(
    backend_store_uri: str, artifacts_destination: Path, host: str = "127.0.0.1", port: int = 5000, workers: int = 1
) -> list[str]:
    """`mlflow server` with a SQL backend store and server-proxied artifacts (`mlflow-artifacts:/`).

    Artifacts go through the server (`--artifacts-destination`), which is what runs on other nodes need.
    """
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    return [
        mlflow, "server", "--backend-store-uri", backend_store_uri,
        "--artifacts-destination", str(artifacts_destination),
        "--host", host, "--port", str(port), "--workers", str(workers),
    ]  # fmt: skip


@contextmanager
def mlflow_server(
    backend_store_uri: str,
    artifacts_destination: Path,
    host: str = "127.0.0.1",
    port: int | None = None,
    workers: int = 1,
    timeout_s: float = 90.0,
) -> Iterator[str]:
    """Run `mlflow server` until the block ends; yields its URL. Binds to loopback unless `host` says otherwise."""
    port = port or free_port(host)
    command = server_command(backend_store_uri, artifacts_destination, host, port, workers)
    with _running(command, f"http://{host}:{port}", "mlflow server", timeout_s) as url:
        yield url


def model_server_command(model_uri: str, host: str = "127.0.0.1", port: int = 5001) -> list[str]:
    """`mlflow models serve` of a registered or logged pyfunc model, in this environment (no conda, no network)."""
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    return [mlflow, "models", "serve", "-m", model_uri, "--env-manager", "local", "--host", host, "--port", str(port)]


@contextmanager
def model_server(
    model_uri: str, host: str = "127.0.0.1", port: int | None = None, timeout_s: float = 120.0
) -> Iterator[str]:
    """Run `mlflow models serve` until the block ends; yields its URL (POST rows to `<url>/invocations`).

    The model URI resolves through `MLFLOW_TRACKING_URI` (a `models:/name/version` needs the registry's server).
    """
    port = port or free_port(host)
    command = model_server_command(model_uri, host, port)
    # It execs `uvicorn` by name: put this environment's scripts first, as an activated virtual environment would.
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}
    with _running(command, f"http://{host}:{port}", "mlflow models serve", timeout_s, env) as url:
        yield url


@contextmanager
def _running(
    command: list[str], url: str, name: str, timeout_s: float, env: dict[str, str] | None = None
) -> Iterator[str]:
    """Start `command` in its own process group, wait until `url` answers /health, and stop it afterwards."""
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True, env=env
    )
    try:
        deadline = time.monotonic() + timeout_s
        while not _healthy(url):
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}: {process.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} at {url} not healthy after {timeout_s:.0f} s")
            time.sleep(0.5)
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
