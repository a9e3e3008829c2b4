"""Start the team's MLflow tracking server: a SQL backend store, artifacts proxied through the server.

Binds to 127.0.0.1 unless --host says otherwise; runs in the foreground until stopped (Ctrl-C / SIGTERM).
Runs on other nodes log to it with `export MLFLOW_TRACKING_URI=http://<this host>:<port>`.

    .venv/bin/python scripts/mlflow_server.py [--backend-store-uri sqlite:///mlflow-server/mlflow.db]
        [--artifacts mlflow-server/artifacts] [--host 127.0.0.1] [--port 5000] [--workers 4]

The backend store may be any SQLAlchemy URI MLflow accepts, e.g. postgresql://user@db-host/mlflow.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from evf_lightning.tracking.server import server_command


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend-store-uri", default="sqlite:///mlflow-server/mlflow.db")
    parser.add_argument("--artifacts", type=Path, default=Path("mlflow-server/artifacts"))
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 exposes the server to every network")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    if args.backend_store_uri.startswith("sqlite:///"):
        Path(args.backend_store_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    args.artifacts.mkdir(parents=True, exist_ok=True)
    command = server_command(args.backend_store_uri, args.artifacts.resolve(), args.host, args.port, args.workers)
    print(f"MLflow server on {args.host}:{args.port}, store {args.backend_store_uri}, artifacts {args.artifacts}")
    print(f"clients: export MLFLOW_TRACKING_URI=http://{args.host}:{args.port}", flush=True)
    os.execvp(command[0], command)  # the server itself receives Ctrl-C / SIGTERM


if __name__ == "__main__":
    main()
