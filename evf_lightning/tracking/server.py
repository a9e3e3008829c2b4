"""Start and stop a real MLflow tracking server (SQL backend store, artifact root) on loopback."""

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
    url = f"http://{host}:{port}"
    command = server_command(backend_store_uri, artifacts_destination, host, port, workers)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        while not _healthy(url):
            if process.poll() is not None:
                raise RuntimeError(
                    f"mlflow server exited with {process.returncode}: {process.stderr.read().decode()[-2000:]}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"mlflow server at {url} not healthy after {timeout_s:.0f} s")
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
