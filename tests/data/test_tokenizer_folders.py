"""The data module tokenises with the prompt encoder's own tokenizer folder: BEiT-3's, a BERT/CLIP-style one, an LLM's.

The folders are written here from a vocabulary of the synthetic sentences, so nothing reaches a hub.
"""

import json
import re
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import BertTokenizerFast, PreTrainedTokenizerFast, XLMRobertaTokenizer

from evf_lightning.data.datamodule import EvfDataModule
from evf_lightning.data.sources import Source
from evf_lightning.data.tokenizer import load_tokenizer
from evf_lightning.training.lightning_cli import EvfCLI

VAL = Source(dataset="refcoco", split_by="unc", split="val")


def _words(synth_root) -> list[str]:
    data = _datamodule(synth_root, synth_root / "tokenizer")
    return sorted({word for item in data.val_sets[0] for text in item.texts for word in text.split()})


def _datamodule(root, tokenizer) -> EvfDataModule:
    data = EvfDataModule(
        str(root), str(tokenizer), val=[VAL], sam_image_size=32, beit_image_size=16, eval_batch_size=6, num_workers=0
    )
    data.setup("validate")
    return data


@pytest.fixture(scope="module")
def bert_folder(synth_root, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bert")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *_words(synth_root)]
    BertTokenizerFast(vocab={word: i for i, word in enumerate(words)}).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def causal_lm_folder(synth_root, tmp_path_factory):
    """A GPT-style word-level tokenizer: no BOS/EOS added, no pad token (it pads with EOS)."""
    folder = tmp_path_factory.mktemp("causal_lm")
    vocab = {word: i for i, word in enumerate(["<|endoftext|>", "<unk>", *_words(synth_root)])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>", unk_token="<unk>").save_pretrained(
        str(folder)
    )
    return folder


def _first_batch(data: EvfDataModule):
    return next(iter(data.val_dataloader()[0]))


def test_beit3_folder_keeps_the_sentencepiece_class(synth_root):
    tokenizer = load_tokenizer(synth_root / "tokenizer")
    assert type(tokenizer) is XLMRobertaTokenizer
    assert (tokenizer.pad_token_id, tokenizer.padding_side) == (1, "right")


def test_bert_folder_pads_with_its_own_pad_id_on_the_right(synth_root, bert_folder):
    data = _datamodule(synth_root, bert_folder)
    assert isinstance(data.tokenizer, BertTokenizerFast) and data.tokenizer.pad_token_id == 0
    batch = _first_batch(data)
    lengths = batch.attention_mask.sum(1)
    assert len(set(lengths.tolist())) > 1  # some rows are padded
    assert (batch.input_ids[~batch.attention_mask] == 0).all()
    for row, text in enumerate(batch.texts):
        ids = batch.input_ids[row, : lengths[row]].tolist()
        assert ids[0] == 2 and ids[-1] == 3 and batch.attention_mask[row, : lengths[row]].all()  # [CLS] ... [SEP]
        assert data.tokenizer.unk_token_id not in ids and data.tokenizer.decode(ids, skip_special_tokens=True) == text


def test_causal_lm_folder_without_pad_pads_with_eos_and_masks_by_length(synth_root, causal_lm_folder):
    data = _datamodule(synth_root, causal_lm_folder)
    eos = data.tokenizer.eos_token_id
    assert data.tokenizer.pad_token_id == eos == 0
    batch = _first_batch(data)
    assert batch.attention_mask.sum(1).tolist() == [len(text.split()) for text in batch.texts]  # no special tokens
    assert (batch.input_ids[~batch.attention_mask] == eos).all()
    assert not (batch.input_ids[batch.attention_mask] == eos).any()
    first = batch.input_ids[0, : len(batch.texts[0].split())]
    assert torch.equal(first, torch.tensor(data.tokenizer(batch.texts[0])["input_ids"]))


def test_bad_folders_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"{re.escape(str(tmp_path))} has no tokenizer_config\.json"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "XLMRobertaTokenizer"}))
    with pytest.raises(FileNotFoundError, match=r"has no sentencepiece\.bpe\.model"):
        load_tokenizer(tmp_path)


def test_a_bert_encoder_trains_with_its_own_tokenizer_folder(synth_root, bert_folder, tmp_path, monkeypatch):
    """End to end: the BERT folder's ids (pad 0, [CLS] first) reach a BERT prompt encoder and training steps."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    bert = {"class_path": "evf_lightning.models.hf_prompt_encoder.HfTextPromptConfig", "init_args": {}}
    cli = EvfCLI(
        args=[
            "--config", str(Path(__file__).resolve().parents[2] / "configs/experiments/quickstart.yaml"),
            "--model.model.prompt_encoder", json.dumps(bert),
            "--data.root", str(synth_root), "--data.tokenizer", str(bert_folder),
            "--data.num_workers", "0", "--data.batch_size", "2",
            "--trainer.max_steps", "2", "--trainer.limit_val_batches", "0", "--trainer.logger", "false",
            "--trainer.default_root_dir", str(tmp_path),
        ],
        run=False,
    )  # fmt: skip
    assert len(cli.datamodule.tokenizer) <= cli.model.model.config.prompt_encoder.vocab_size
    before = cli.model.model.prompt_encoder.hf.embeddings.word_embeddings.weight.detach().clone()
    cli.trainer.fit(cli.model, cli.datamodule)
    assert cli.trainer.global_step == 2
    assert not torch.equal(before, cli.model.model.prompt_encoder.hf.embeddings.word_embeddings.weight)
