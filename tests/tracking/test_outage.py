"""A tracking server outage costs no training and loses no metric (real `mlflow server`, loopback)."""

from mlflow.tracking import MlflowClient

from evf_lightning.tracking.logger import EvfMLFlowLogger
from evf_lightning.tracking.server import free_port, mlflow_server


def test_metrics_logged_during_an_outage_arrive_after_it(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    backend = f"sqlite:///{tmp_path / 'store.db'}"
    port = free_port()
    with mlflow_server(backend, tmp_path / "artifacts", port=port) as url:
        logger = EvfMLFlowLogger(experiment_name="outage", tracking_uri=url)
        logger.log_metrics({"train/loss": 1.0}, step=0)
    # server gone: these calls must neither raise nor be forgotten
    logger.log_metrics({"train/loss": 0.9}, step=1)
    logger.log_metrics({"train/loss": 0.8}, step=2)
    assert len(logger._pending) == 2
    with mlflow_server(backend, tmp_path / "artifacts", port=port) as url:
        logger.log_metrics({"train/loss": 0.7}, step=3)
        history = MlflowClient(url).get_metric_history(logger.run_id, "train/loss")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
        (0, 1.0),
        (1, 0.9),
        (2, 0.8),
        (3, 0.7),
    ]
    assert logger._pending == []
