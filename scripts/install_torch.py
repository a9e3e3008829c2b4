"""Install torch into the current environment without ever pulling a CUDA build onto a CPU machine.

- torch already importable (a GPU machine's own CUDA build, or an earlier install): kept as it is.
- an NVIDIA GPU visible (`nvidia-smi -L` succeeds): the default build for this platform.
- otherwise the pinned CPU build: taken as pip resolves it when that is a CPU build (a local wheel
  store, or macOS/Windows wheels, which are CPU-only), else from PyTorch's CPU wheel index.

Arguments after the script name go to `pip install` as they are (the Makefile passes `--no-compile`).
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
import tempfile

CPU_VERSION = "2.13.0"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", *args, *sys.argv[1:]], check=True)


def torch_importable() -> bool:
    return subprocess.run([sys.executable, "-c", "import torch"], capture_output=True).returncode == 0


def gpu_visible() -> bool:
    smi = shutil.which("nvidia-smi")
    return smi is not None and subprocess.run([smi, "-L"], capture_output=True).returncode == 0


def resolves_to_cpu_build(spec: str) -> bool:
    """Does plain `pip install spec` pick a CPU-only wheel here? Asks pip without installing."""
    if platform.system() != "Linux":
        return True
    with tempfile.NamedTemporaryFile(suffix=".json") as report:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--dry-run",
                "--no-deps",
                "--quiet",
                "--report",
                report.name,
                spec,
            ],
            capture_output=True,
        )
        if done.returncode != 0:
            return False
        with open(report.name) as handle:
            installs = json.load(handle).get("install", [])
    return any("+cpu" in item["metadata"]["version"] for item in installs)


def main() -> None:
    if torch_importable():
        print("torch already installed: kept")
    elif gpu_visible():
        pip("torch>=2.4")
    elif resolves_to_cpu_build(spec := f"torch=={CPU_VERSION}"):
        pip(spec)
    else:
        pip(spec, "--index-url", CPU_INDEX)


if __name__ == "__main__":
    main()
