"""Processes of one job opening a new SQLite store at once (torchrun, DDP) all get a working logger."""

import multiprocessing

from evf_lightning.tracking.logger import EvfMLFlowLogger


def open_logger(uri: str) -> None:
    EvfMLFlowLogger(experiment_name="race", tracking_uri=uri)


def test_several_processes_create_one_sqlite_store_at_once(tmp_path):
    uri = f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}"
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=open_logger, args=(uri,)) for _ in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [process.exitcode for process in processes] == [0, 0, 0]
    logger = EvfMLFlowLogger(experiment_name="race", tracking_uri=uri)
    logger.log_metrics({"x": 1.0}, step=0)
    assert logger.experiment.get_run(logger.run_id).data.metrics == {"x": 1.0}
