"""`evf export` of a real `evf fit` checkpoint and `evf import` of the folder it writes, through the CLI."""

import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from evf_lightning.cli import main
from evf_lightning.hub.model_card import CARD_FILE, METRICS_HEADER
from evf_lightning.hub.official_folder import CONFIG_FILE, OUR_FIELD, config_from_dict, config_to_dict
from evf_lightning.hub.official_names import name_map
from evf_lightning.hub.pretrained import read_state_dict

REPO = Path(__file__).resolve().parents[2]
TOKENIZER_FILES = ("sentencepiece.bpe.model", "tokenizer_config.json", "special_tokens_map.json")


def test_export_writes_the_trained_weights_config_and_tokenizer(tmp_path, trained_run, synth_root, capsys):
    out = tmp_path / "official"
    main(["export", str(trained_run["ckpt"]), str(out)])
    printed = capsys.readouterr().out
    assert f"{out}: 6 files" in printed and "sizes are not a published preset" in printed
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [CONFIG_FILE, "model.safetensors", CARD_FILE, *TOKENIZER_FILES]
    )
    written = read_state_dict(out)
    official = name_map("sam").to_official(trained_run["state"])
    assert set(written) == set(official)
    for key, tensor in official.items():
        assert written[key].dtype == torch.float32 and torch.equal(written[key], tensor), key
    # The model config is the run's, read from the config.yaml `evf fit` wrote (the checkpoint has no hparams).
    run_model = yaml.safe_load(trained_run["run_config"].read_text())["model"]["model"]
    assert json.loads((out / CONFIG_FILE).read_text())[OUR_FIELD] == config_to_dict(config_from_dict(run_model, "run"))
    for name in TOKENIZER_FILES:
        assert (out / name).read_bytes() == (synth_root / "tokenizer" / name).read_bytes(), name


def test_import_writes_a_model_yaml_and_a_fine_tune_command_that_starts_from_the_weights(tmp_path, trained_run, capsys):
    from evf_lightning.training.lightning_cli import EvfCLI

    official, imported = tmp_path / "official", tmp_path / "imported"
    main(["export", str(trained_run["ckpt"]), str(official)])
    main(["import", str(official), str(imported), "--experiment", str(REPO / "configs/experiments/quickstart.yaml")])
    printed = capsys.readouterr().out
    weights = name_map("sam").to_official(trained_run["state"])
    values = sum(tensor.numel() for tensor in weights.values())
    assert f"{official}: loads strictly ({len(weights)} tensors, {values:,} values)" in printed
    command = printed.split("fine-tune from it with:\n")[1].strip().split()
    assert command[:2] == ["evf", "fit"]
    assert command[command.index("--model.init.evf") + 1] == str(official)
    model_yaml = imported / "model.yaml"
    assert command[command.index("--model.model") + 1] == str(model_yaml)
    run_model = yaml.safe_load(trained_run["run_config"].read_text())["model"]["model"]
    assert config_from_dict(yaml.safe_load(model_yaml.read_text()), "model.yaml") == config_from_dict(run_model, "run")
    # The printed command, as `evf fit` parses it, builds the model from the trained weights.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
        patch.chdir(tmp_path)
        cli = EvfCLI(args=[*command[2:], "--data.root", str(tmp_path)], run=False)
    for key, tensor in cli.model.model.state_dict().items():
        assert torch.equal(tensor, trained_run["state"][key]), key


def test_export_options_bin_shards_and_float16(tmp_path, trained_run):
    out = tmp_path / "official"
    main(
        [
            "export",
            str(trained_run["ckpt"]),
            str(out),
            "--format",
            "bin",
            "--max_shard_size",
            "1MB",
            "--dtype",
            "float16",
        ]
    )
    names = sorted(p.name for p in out.iterdir())
    shards = [name for name in names if name.startswith("pytorch_model-")]
    assert shards == ["pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"]  # 1.15 MB in fp16
    assert "pytorch_model.bin.index.json" in names and "model.safetensors" not in names
    assert json.loads((out / CONFIG_FILE).read_text())["torch_dtype"] == "float16"
    written = read_state_dict(out)
    for key, tensor in name_map("sam").to_official(trained_run["state"]).items():
        assert written[key].dtype == torch.float16 and torch.equal(written[key], tensor.half()), key


def test_export_finds_the_config_in_hyper_parameters_or_from_the_config_option(tmp_path, trained_run, synth_root):
    checkpoint = torch.load(trained_run["ckpt"], weights_only=True)
    alone = tmp_path / "alone.ckpt"  # no run folder next to it
    torch.save(checkpoint, alone)
    with pytest.raises(SystemExit, match=r"has no hyper-parameters and neither .* exists; pass --run_config"):
        main(["export", str(alone), str(tmp_path / "a")])
    tokenizer = ["--tokenizer", str(synth_root / "tokenizer")]
    main(
        [
            "export",
            str(alone),
            str(tmp_path / "b"),
            "--run_config",
            str(REPO / "configs/model/evf_tiny.yaml"),
            *tokenizer,
        ]
    )
    run_model = yaml.safe_load(trained_run["run_config"].read_text())["model"]["model"]
    checkpoint["hyper_parameters"] = {"model": run_model}
    torch.save(checkpoint, alone)
    main(["export", str(alone), str(tmp_path / "c"), *tokenizer])
    assert (tmp_path / "c" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
    assert json.loads((tmp_path / "c" / CONFIG_FILE).read_text())[OUR_FIELD] == config_to_dict(
        config_from_dict(run_model, "run")
    )


def test_export_refuses_a_model_yaml_without_a_tokenizer_and_a_config_that_does_not_fit(
    tmp_path, trained_run, synth_root
):
    with pytest.raises(SystemExit, match=r"evf_tiny\.yaml names no data\.tokenizer; pass --tokenizer"):
        main(
            [
                "export",
                str(trained_run["ckpt"]),
                str(tmp_path / "a"),
                "--run_config",
                str(REPO / "configs/model/evf_tiny.yaml"),
            ]
        )
    from evf_lightning.hub.pretrained import CheckpointMismatchError

    full_size = ["--run_config", str(REPO / "configs/model/evf_sam.yaml"), "--tokenizer", str(synth_root / "tokenizer")]
    with pytest.raises(CheckpointMismatchError, match=r"last\.ckpt do not fit the configured model: 1300 missing"):
        main(["export", str(trained_run["ckpt"]), str(tmp_path / "b"), *full_size])
    assert not (tmp_path / "b").exists()


def test_verbs_are_in_the_evf_usage(capsys):
    main(["--help"])
    usage = capsys.readouterr().out
    assert re.search(r"^  import +Check an official EVF-SAM folder", usage, re.MULTILINE)
    assert re.search(r"^  export +Write a checkpoint of `evf fit` as an official EVF-SAM folder", usage, re.MULTILINE)


def test_import_of_a_folder_without_weights_names_the_folder(tmp_path, trained_run):
    main(["export", str(trained_run["ckpt"]), str(tmp_path / "official")])
    (tmp_path / "official" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"official has none of \('model\.safetensors'"):
        main(["import", str(tmp_path / "official"), str(tmp_path / "imported")])


def card_metrics(card: str) -> dict[str, float]:
    """The metrics table of a model card, read back."""
    rows = card.split(METRICS_HEADER, 1)[1].split("\n\n", 1)[0].strip().splitlines()[1:]
    cells = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]
    return {name.strip("`"): float(value) for name, value in cells}


def test_the_model_card_holds_the_runs_metrics_data_and_how_to_load_it(tmp_path, trained_run):
    from mlflow.tracking import MlflowClient

    out = tmp_path / "official"
    main(["export", str(trained_run["ckpt"]), str(out), "--tracking_uri", trained_run["tracking_uri"]])
    card = (out / CARD_FILE).read_text()
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["pipeline_tag"] == "image-segmentation" and front["library_name"] == "evf-lightning"
    assert front["license"] == "apache-2.0" and "base_model" not in front and "backbone-sam" in front["tags"]
    logged = MlflowClient(trained_run["tracking_uri"]).get_run(trained_run["run_id"]).data.metrics
    assert "val/refcoco_unc_val/ciou" in logged
    assert card_metrics(card) == logged
    assert f"run `{trained_run['run_id']}`" in card
    assert "- train: kind refer, dataset refcoco, split_by unc, split train" in card
    assert "- val: kind refer, dataset refcoco, split_by unc, split val" in card
    assert "evf predict-image --model DIR" in card and "The official EVF-SAM code cannot build this model" in card
    assert "inference.py" not in card
    assert "lr: 0.002" in card  # the run's optimizer, in the config section


def test_an_unreachable_run_leaves_the_card_without_metrics_and_the_export_goes_on(tmp_path, trained_run, capsys):
    out = tmp_path / "official"
    missing = f"sqlite:///{tmp_path / 'absent.db'}"
    main(["export", str(trained_run["ckpt"]), str(out), "--tracking_uri", missing])
    assert "warning: the model card has no metrics" in capsys.readouterr().err
    assert not (tmp_path / "absent.db").exists()
    card = (out / CARD_FILE).read_text()
    assert (
        f"Metrics are unavailable: run {trained_run['run_id']} could not be read (no MLflow store at {missing}" in card
    )
    assert METRICS_HEADER not in card and (out / "model.safetensors").is_file()


def test_a_tracking_server_that_is_down_is_asked_once_and_the_export_goes_on(tmp_path, trained_run, capsys):
    """No server listens on the port: the card says so after one try, instead of MLflow's retries with backoff."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{probe.getsockname()[1]}"
    out = tmp_path / "official"
    main(["export", str(trained_run["ckpt"]), str(out), "--tracking_uri", down])
    assert "warning: the model card has no metrics" in capsys.readouterr().err
    card = (out / CARD_FILE).read_text()
    assert f"Metrics are unavailable: run {trained_run['run_id']} could not be read" in card
