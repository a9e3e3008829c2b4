"""The tokenizer folder of a prompt encoder: BEiT-3's sentencepiece files or any transformers tokenizer folder.

BEiT-3 folders (the official checkpoints' layout, `evf synth`'s) load with XLMRobertaTokenizer, as the official
code does; any other folder (CLIP, BERT, a causal LM) loads with AutoTokenizer from its own files. Either way
sequences are right-padded (the collate function pads after the tokens, the prompt encoders read the last
unpadded position) and a pad id exists: a causal LM's tokenizer without one pads with its EOS token.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase, XLMRobertaTokenizer

BEIT3_TOKENIZER_CLASS = "XLMRobertaTokenizer"


def load_tokenizer(folder: str | Path) -> PreTrainedTokenizerBase:
    """The folder's tokenizer, offline, right-padding, with a pad id; errors name the folder and the file."""
    folder = Path(folder)
    config_file = folder / "tokenizer_config.json"
    if not config_file.is_file():
        raise FileNotFoundError(
            f"tokenizer folder {folder} has no tokenizer_config.json (a transformers tokenizer folder, "
            "or the official checkpoints' sentencepiece layout, has one)"
        )
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{config_file} is not JSON: {error}") from error
    if config.get("tokenizer_class") == BEIT3_TOKENIZER_CLASS:
        if not (folder / "sentencepiece.bpe.model").is_file():
            raise FileNotFoundError(
                f"{config_file} names {BEIT3_TOKENIZER_CLASS} but {folder} has no sentencepiece.bpe.model "
                "(expected the layout of the official checkpoints' tokenizer files)"
            )
        tokenizer = XLMRobertaTokenizer.from_pretrained(str(folder), padding_side="right")
    else:
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, padding_side="right")
        except (OSError, ValueError) as error:
            raise ValueError(f"tokenizer folder {folder} does not load with AutoTokenizer: {error}") from error
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise ValueError(f"tokenizer folder {folder} defines neither a pad nor an EOS token to pad with")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def check_fits_vocabulary(
    tokenizer: PreTrainedTokenizerBase,
    vocab_size: int,
    source: str,
    model: str,
    error: type[ValueError] = ValueError,
) -> None:
    """Refuse a tokenizer whose ids run past the model's embedding table before any step indexes out of range.

    `source` names the tokenizer (its folder), `model` what holds the vocabulary (a config field, a checkpoint);
    `error` is the caller's own ValueError subclass, so each floor keeps the error type its callers catch.
    """
    if len(tokenizer) > vocab_size:
        raise error(
            f"{source}: the tokenizer emits {len(tokenizer)} token ids but {model} holds a vocabulary of {vocab_size}"
        )
