"""The toy Table 4 end to end on a 2-core CPU: a real `mlflow server` on loopback holds the sweep, an
interrupted sweep is finished by running it again, and `evf compare` tabulates exactly what the runs logged.
"""

import csv
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from evf_lightning.commands.compare import compare, format_spread
from evf_lightning.commands.sweep import SweepFailed, sweep
from evf_lightning.tracking.server import mlflow_server
from evf_lightning.tracking.sweep_runs import PARENT_TAG, cell_runs, parent_run

TOY = Path(__file__).resolve().parents[2] / "experiments/toy_table4.yaml"
STEPS = 4


@pytest.fixture(scope="module")
def toy_sweep(synth_root, tmp_path_factory):
    """Run the grid in two goes (stopped after two cells, then re-run), compare, and keep what the server holds."""
    folder = tmp_path_factory.mktemp("toy_table4")
    small = {
        "data.root": str(synth_root),
        "data.tokenizer": str(synth_root / "tokenizer"),
        "data.batch_size": 4,
        "trainer.max_steps": STEPS,
        "trainer.val_check_interval": STEPS // 2,
        "trainer.num_sanity_val_steps": 0,
        "trainer.limit_val_batches": 1,
        "data.eval_batch_size": 8,
        "trainer.default_root_dir": str(folder / "runs"),
    }
    with mlflow_server(f"sqlite:///{folder / 'store.db'}", folder / "artifacts") as url:
        client = MlflowClient(url)

        def parent_status() -> str:
            return client.get_run(parent_run(client, "toy_table4", str(TOY))).info.status

        first = sweep(TOY, tracking_uri=url, overrides=small, max_cells=2)
        statuses = [parent_status()]
        second = sweep(TOY, tracking_uri=url, overrides=small)
        statuses.append(parent_status())
        # the same cells under other overrides are other experiments: none counts as finished (max_cells=0 runs none)
        other = sweep(TOY, tracking_uri=url, overrides={**small, "trainer.max_steps": STEPS + 2}, max_cells=0)
        statuses.append(parent_status())
        with pytest.raises(SweepFailed, match="no such data"):  # a cell that fails once its run starts
            sweep(TOY, tracking_uri=url, overrides={**small, "data.root": str(folder / "no such data")}, max_cells=1)
        statuses.append(parent_status())
        again = sweep(TOY, tracking_uri=url, overrides=dict(reversed(small.items())), max_cells=0)
        statuses.append(parent_status())
        table = compare(str(TOY), tracking_uri=url, output=folder / "compare")
        runs = cell_runs(client, "toy_table4")
        history = {
            (run.info.run_id, split): client.get_metric_history(run.info.run_id, f"val/{split}/ciou")
            for run in runs
            for split in table.splits
        }
        parent = parent_run(client, "toy_table4", str(TOY))
    return {"first": first, "second": second, "other": other, "again": again, "statuses": statuses, "table": table,
            "runs": runs, "history": history, "parent": parent, "folder": folder}  # fmt: skip


def test_rerun_finishes_only_the_missing_cells(toy_sweep):
    first, second = toy_sweep["first"], toy_sweep["second"]
    assert len(first.ran) == 2 and not first.skipped
    assert second.skipped == first.ran
    assert len(second.ran) == 2 and set(second.ran).isdisjoint(first.ran)
    assert len(toy_sweep["runs"]) == 4  # one run per cell, none repeated


def test_a_cell_is_its_axes_and_the_overrides(toy_sweep):
    other, again = toy_sweep["other"], toy_sweep["again"]
    assert not other.skipped and not other.ran  # finished under other overrides: still to run under these
    assert again.skipped == toy_sweep["first"].ran + toy_sweep["second"].ran  # same overrides, another key order


def test_parent_run_is_finished_only_once_every_cell_is(toy_sweep):
    # after 2 of 4 cells; after all 4; under other overrides (none run); a failed cell; the sweep's own overrides
    assert toy_sweep["statuses"] == ["RUNNING", "FINISHED", "RUNNING", "FAILED", "FINISHED"]


def test_every_cell_is_a_child_run_tagged_with_its_axes(toy_sweep):
    fusions = []
    for run in toy_sweep["runs"]:
        assert run.data.tags[PARENT_TAG] == toy_sweep["parent"]
        fusion = run.data.tags["axis.model.model.prompt_encoder.fusion"]
        assert run.data.params["model.model.prompt_encoder.fusion"] == fusion
        fusions.append(fusion)
    assert sorted(fusions) == ["early", "early", "late", "text"]


def test_compare_table_holds_exactly_the_logged_final_metrics(toy_sweep):
    table, history = toy_sweep["table"], toy_sweep["history"]
    assert table.splits == ("refcoco_unc_testA", "refcoco_unc_val")
    assert [row.axes.get("model.model.prompt_encoder.fusion") for row in table.rows] == [
        "text",
        "late",
        "early",
        "early",
    ]
    assert [row.axes.get("model.model.prompt_encoder.cross_modal_layers") for row in table.rows] == [
        None, None, "[1,2]", None
    ]  # fmt: skip
    with (toy_sweep["folder"] / "compare" / "table.csv").open() as handle:
        written = list(csv.DictReader(handle))
    for row, line in zip(table.rows, written, strict=True):
        (run_id,) = row.run_ids
        for split in table.splits:
            logged = max(history[(run_id, split)], key=lambda m: m.step)
            assert [m.step for m in sorted(history[(run_id, split)], key=lambda m: m.step)] == [1, 3]
            assert row.values[split] == [logged.value]
            assert float(line[f"{split}/mean"]) == logged.value
    markdown = (toy_sweep["folder"] / "compare" / "table.md").read_text()
    assert f"| text |  | {table.rows[0].values['refcoco_unc_testA'][0]:.4f} |" in markdown
    for plot in ("ciou_per_cell.png", "val_curves.png"):
        assert (toy_sweep["folder"] / "compare" / plot).read_bytes()[:4] == b"\x89PNG"


def test_spread_over_seeds_is_mean_and_sample_deviation():
    assert format_spread([0.5, 0.7]) == "0.6000 ± 0.1414 (2)"
    assert format_spread([0.25]) == "0.2500"
    assert format_spread([]) == "–"
