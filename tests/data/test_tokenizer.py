"""The generated tokenizer folder loads as the official checkpoints' does, offline, with BEiT-3's ids.

transformers 5.x's XLMRobertaTokenizer is tokenizers-backed and converts the sentencepiece file on
load (as if it were a unigram model), so its ids are checked against sentencepiece itself (XLM-R's
fairseq convention: every piece id + 1, wrapped in <s> ... </s>).
"""

import json

import pytest
import sentencepiece as spm
from transformers import AutoTokenizer, XLMRobertaTokenizer

from evf_lightning.data.synthetic import write_synthetic_refer, write_synthetic_tokenizer


@pytest.fixture(scope="module")
def sentences(tmp_path_factory) -> list[str]:
    summary = write_synthetic_refer(tmp_path_factory.mktemp("refer"), split_by="unc", num_images={"train": 80})
    return list(summary.sentences)


@pytest.fixture(scope="module")
def folder(tmp_path_factory, sentences):
    out = tmp_path_factory.mktemp("tokenizer")
    token_ids = write_synthetic_tokenizer(out, sentences)
    return out, token_ids


def test_folder_has_the_official_layout(folder):
    out, _ = folder
    assert sorted(p.name for p in out.iterdir()) == [
        "sentencepiece.bpe.model",
        "special_tokens_map.json",
        "tokenizer_config.json",
    ]
    config = json.loads((out / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "XLMRobertaTokenizer"
    assert (config["padding_side"], config["model_max_length"]) == ("right", 512)
    processor = spm.SentencePieceProcessor(model_file=str(out / "sentencepiece.bpe.model"))
    assert [processor.id_to_piece(i) for i in range(3)] == ["<unk>", "<s>", "</s>"]  # unk 0, bos 1, eos 2
    assert processor.pad_id() == -1


def test_loads_offline_with_beit3_special_ids_and_matches_sentencepiece(folder, sentences):
    out, token_ids = folder
    tokenizer = XLMRobertaTokenizer.from_pretrained(str(out), local_files_only=True)
    special = (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id)
    assert special == (0, 1, 2, 3)
    assert tokenizer.mask_token_id == token_ids - 1 and len(tokenizer) == token_ids <= 256  # fits the tiny model
    assert tokenizer.padding_side == "right"
    processor = spm.SentencePieceProcessor(model_file=str(out / "sentencepiece.bpe.model"))
    for text in sorted(set(sentences)):
        ids = tokenizer(text)["input_ids"]
        assert ids == [0] + [i + 1 for i in processor.encode(text)] + [2], text
        assert 3 not in ids, text  # every generated word is covered, nothing is <unk>
        assert tokenizer.decode(ids, skip_special_tokens=True) == text
    words = {word for text in sentences for word in text.split()}
    assert all(len(tokenizer(word, add_special_tokens=False)["input_ids"]) == 1 for word in words)  # whole words
    batch = tokenizer(["the red one", "the leftmost big circle"], padding=True)
    assert batch["input_ids"][0][-1] == 1 and batch["attention_mask"][0][-1] == 0  # right-padded with <pad>
    assert isinstance(AutoTokenizer.from_pretrained(str(out), local_files_only=True), XLMRobertaTokenizer)


def test_same_sentences_same_model_bytes(tmp_path, folder, sentences):
    out, _ = folder
    write_synthetic_tokenizer(tmp_path, sentences)
    for name in ("sentencepiece.bpe.model", "tokenizer_config.json", "special_tokens_map.json"):
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes()
