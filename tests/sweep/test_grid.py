"""Grid files: expansion into cells, every cell checked before any run, failed cells retried, cluster launchers."""

from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from evf_lightning.commands.grid import GridError, in_process_cli, load_grid, validate_cell
from evf_lightning.commands.sweep import SweepFailed, sweep
from evf_lightning.tracking.sweep_runs import cell_runs
from evf_lightning.training.lightning_cli import EvfCLI, model_config

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "configs/experiments/quickstart.yaml"
FUSION = "model.model.prompt_encoder.fusion"
BEIT3_DEPTH = "model.model.prompt_encoder.beit3.depth"


def write_grid(folder: Path, **fields) -> Path:
    path = folder / "grid.yaml"
    path.write_text(yaml.safe_dump({"name": "g", "base": str(QUICKSTART), **fields}, sort_keys=False))
    return path


def test_cells_are_the_listed_cells_times_the_axes_in_order(tmp_path):
    grid = load_grid(
        write_grid(
            tmp_path,
            cells=[{FUSION: "text"}, {FUSION: "early", "model.model.prompt_encoder.cross_modal_layers": [0, 1]}],
            axes={"seed_everything": [0, 1], "data.batch_size": [4]},
            fixed={"model.model": "../model/evf_tiny.yaml"},
        )
    )
    assert [cell.key for cell in grid.cells] == [
        f"{FUSION}=text;seed_everything=0;data.batch_size=4",
        f"{FUSION}=text;seed_everything=1;data.batch_size=4",
        f"{FUSION}=early;model.model.prompt_encoder.cross_modal_layers=[0,1];seed_everything=0;data.batch_size=4",
        f"{FUSION}=early;model.model.prompt_encoder.cross_modal_layers=[0,1];seed_everything=1;data.batch_size=4",
    ]
    assert grid.cells[1].label == f"{FUSION}=text;data.batch_size=4"  # the seed is a spread, not a row
    assert grid.fixed["model.model"] == str((tmp_path / "../model/evf_tiny.yaml").resolve())  # beside the grid
    args = grid.fit_args(grid.cells[2])
    assert args[:2] == ["--config", str(QUICKSTART)]
    assert args[-8:] == [f"--{FUSION}", "early", "--model.model.prompt_encoder.cross_modal_layers", "[0,1]",
                         "--seed_everything", "0", "--data.batch_size", "4"]  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"axes": {FUSION: []}}, f"axis '{FUSION}' must be a non-empty list"),
        ({"axes": {FUSION: ["text"]}, "fixed": {FUSION: "late"}}, "set twice"),
        ({"axis": {FUSION: ["text"]}}, r"unknown field\(s\) \['axis'\]"),
        ({"base": "missing.yaml"}, "base 'missing.yaml' does not exist"),
    ],
)
def test_malformed_grid_files_name_the_field(tmp_path, fields, message):
    with pytest.raises(GridError, match=message):
        load_grid(write_grid(tmp_path, **fields))


@pytest.mark.parametrize(
    ("axes", "message"),
    [
        (
            {"model.model.prompt_encoder.fusin": ["text"]},
            r"(?s)key \"model\.model\.prompt_encoder\".*'fusin' is not accepted",
        ),
        ({"trainer.max_steps": [10, "many"]}, r'(?s)key "trainer.max_steps".*Got value: many'),
        ({FUSION: ["text", "sideways"]}, r'(?s)key "model\.model\.prompt_encoder".*"fusion".*Got value: sideways'),
        ({"model.model.prompt_encoder.prompt_token": ["image_cls"], FUSION: ["text"]}, "impossible with fusion 'text'"),
    ],
)
def test_bad_axis_fails_before_any_run_naming_the_key(tmp_path, axes, message):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(GridError, match=message) as raised:
        sweep(write_grid(tmp_path, axes=axes), tracking_uri=uri)
    assert "grid.yaml: cell" in str(raised.value)
    assert MlflowClient(uri).search_experiments(filter_string="name = 'g'") == []  # nothing started


def test_a_dotted_field_edits_the_clip_encoder_the_grid_chose(tmp_path):
    """A dotted override keeps the prompt encoder its config chose; a field that encoder lacks is an error."""
    clip = {"class_path": "evf_lightning.models.hf_prompt_encoder.ClipPromptConfig", "init_args": {"fusion": "late"}}
    grid = load_grid(write_grid(tmp_path, fixed={"model.model.prompt_encoder": clip}, axes={FUSION: ["text"]}))
    with in_process_cli():
        config = EvfCLI(args=grid.fit_args(grid.cells[0]), run=False, instantiate=False).config
    encoder = model_config(config.model.model).prompt_encoder
    assert (encoder.kind, encoder.fusion) == ("clip", "text")
    validate_cell(grid, grid.cells[0])
    grid = load_grid(write_grid(tmp_path, fixed={"model.model.prompt_encoder": clip}, axes={BEIT3_DEPTH: [1]}))
    with pytest.raises(GridError, match=r"cell 0 .*prompt_encoder"):
        validate_cell(grid, grid.cells[0])


def test_a_failing_cell_does_not_stop_the_others_and_is_not_counted_finished(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    grid = write_grid(tmp_path, axes={FUSION: ["text", "late"]}, fixed={"data.root": str(tmp_path / "no_data")})
    with pytest.raises(SweepFailed, match="fusion=late") as raised:
        sweep(grid, tracking_uri=uri, overrides={"trainer.default_root_dir": str(tmp_path / "runs")})
    assert "fusion=text" in str(raised.value)  # both were tried
    assert cell_runs(MlflowClient(uri), "g") == []


@pytest.mark.parametrize("emit", ["slurm", "torchrun"])
def test_emitted_launchers_run_each_cell_through_evf_sweep(tmp_path, emit):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    grid = write_grid(tmp_path, axes={FUSION: ["text", "late", "early"]})
    report = sweep(grid, emit=emit, tracking_uri=uri, output=tmp_path / "launch", nodes=2, devices=8)
    text = report.emitted.read_text()
    assert text.count("-m evf_lightning.cli sweep") == (1 if emit == "slurm" else 3)
    assert '"trainer.num_nodes": 2, "trainer.devices": 8' in text
    if emit == "slurm":
        assert "#SBATCH --array=0-2" in text and "#SBATCH --nodes=2" in text and "--ntasks-per-node=8" in text
        assert text.rstrip().endswith('--cell "$SLURM_ARRAY_TASK_ID"')
    else:
        assert [line.split("--cell ")[1].split()[0] for line in text.splitlines() if "--cell" in line] == [
            "0",
            "1",
            "2",
        ]
        assert "--nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d" in text
    assert cell_runs(MlflowClient(uri), "g") == []  # emitting runs nothing
