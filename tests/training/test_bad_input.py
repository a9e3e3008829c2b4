"""Bad input fails early with an error that names the sample, file or key; skip mode counts and goes on."""

import pickle
from pathlib import Path

import pytest
from transformers import XLMRobertaTokenizer

from evf_lightning.cli import main
from evf_lightning.data.batch import collate_expressions
from evf_lightning.data.expression_dataset import EmptyExpressionError, ExpressionDataset
from evf_lightning.data.refer import ReferDataset
from evf_lightning.data.synthetic import write_synthetic_dataset
from evf_lightning.data.transforms import Beit3Preprocess, SamPreprocess

QUICKSTART = str(Path(__file__).resolve().parents[2] / "configs/experiments/quickstart.yaml")


@pytest.fixture
def broken_root(tmp_path):
    """Generated data where one expression is blank and one image is corrupt."""
    write_synthetic_dataset(tmp_path, train_images=4, val_images=2, test_images=1)
    refs_path = tmp_path / "refer_seg" / "refcoco" / "refs(unc).p"
    refs = pickle.loads(refs_path.read_bytes())
    first_val = next(r for r in refs if r["split"] == "val")
    first_val["sentences"][0]["sent"] = "   "
    refs_path.write_bytes(pickle.dumps(refs, protocol=2))
    return tmp_path, first_val["image_id"]


def dataset(root, split: str, on_bad_sample: str = "raise") -> ExpressionDataset:
    return ExpressionDataset(
        [ReferDataset(root, "refcoco", "unc", split)],
        XLMRobertaTokenizer.from_pretrained(str(root / "tokenizer")),
        SamPreprocess(size=64),
        Beit3Preprocess(size=32),
        expressions_per_image=None,
        on_bad_sample=on_bad_sample,
    )


def test_expression_that_tokenises_to_nothing_names_the_sample(broken_root):
    root, image_id = broken_root
    data = dataset(root, "val")
    index = data.readers[0].image_ids.index(image_id)
    with pytest.raises(EmptyExpressionError, match=rf"'   ' of refcoco/unc/val image {image_id}"):
        data[index]


def test_skip_mode_drops_and_counts_bad_samples(broken_root):
    root, _ = broken_root
    data = dataset(root, "val", on_bad_sample="skip")
    items = [data[i] for i in range(len(data))]
    assert items.count(None) == 1 and data.num_skipped == 1
    batch = collate_expressions(items)
    assert batch.num_skipped == 1 and batch.num_images == len(data) - 1


def test_unknown_config_key_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--config", QUICKSTART, "--model.model.image_backbone.widht", "3"])
    assert "widht" in capsys.readouterr().err


def test_unknown_key_inside_a_config_file_is_named(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer:\n  max_stpes: 3\n")
    with pytest.raises(SystemExit):
        main(["fit", "--config", QUICKSTART, "--config", str(bad)])
    assert "max_stpes" in capsys.readouterr().err


def test_missing_data_fails_before_training_and_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    write_synthetic_dataset(tmp_path / "d", train_images=2, val_images=1, test_images=1)
    (tmp_path / "d" / "refer_seg" / "refcoco" / "refs(unc).p").unlink()
    args = ["fit", "--config", QUICKSTART, "--data.root", str(tmp_path / "d"),
            "--data.tokenizer", str(tmp_path / "d" / "tokenizer"),
            "--trainer.default_root_dir", str(tmp_path)]  # fmt: skip
    with pytest.raises(FileNotFoundError, match=r"refs\(unc\)\.p"):
        main(args)


def test_tokenizer_larger_than_the_model_vocabulary_is_named_before_training(synth_root, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    args = ["fit", "--config", QUICKSTART,
            "--data.root", str(synth_root), "--data.tokenizer", str(synth_root / "tokenizer"),
            "--model.model.prompt_encoder.beit3.vocab_size", "10",
            "--trainer.default_root_dir", str(tmp_path)]  # fmt: skip
    with pytest.raises(
        ValueError, match=r"token ids but the prompt encoder \(model\.model\.prompt_encoder vocab_size.* of 10"
    ):
        main(args)
