"""Official EVF-SAM checkpoint folders written and read back (reference/checkpoints.md §7, §9).

Every backbone family is covered; a family whose module has not landed yet is skipped, not faked.
"""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from evf_lightning.hub.official_folder import (
    CONFIG_FILE,
    FAMILIES,
    OUR_FIELD,
    OfficialFolderError,
    check_tokenizer,
    load_official_folder,
    official_config,
    official_state_dict,
    parse_size,
    read_official_config,
    save_official_folder,
)
from evf_lightning.hub.official_names import name_map
from evf_lightning.hub.pretrained import CheckpointMismatchError, read_state_dict
from evf_lightning.models.beit3 import Beit3Config
from evf_lightning.models.evf import EvfModel, EvfModelConfig
from evf_lightning.models.prompt_encoder import Beit3PromptConfig

# The fields of the published config.json files (checkpoints.md §7), which the official EvfConfig reads.
PUBLISHED_FIELDS = {
    "architectures",
    "bos_token_id",
    "eos_token_id",
    "hidden_size",
    "mm_extractor_scale",
    "model_type",
    "out_dim",
    "pad_token_id",
    "sam_scale",
    "tie_word_embeddings",
    "torch_dtype",
    "transformers_version",
}
TOKENIZER_FILES = {"sentencepiece.bpe.model", "tokenizer_config.json", "special_tokens_map.json"}
# Published variants (checkpoints.md §1): backbone preset, BEiT-3 preset, config.json values, key count.
PUBLISHED = [
    ("sam", "vit_h", "large", "EvfSamModel", "huge", "large", 1024, 1569),
    ("sam2", "hiera_large", "large", "EvfSam2Model", "large", "large", 1024, 1875),
    ("effi", "vit_s", "large", "EvfEffiSamModel", "small", "large", 1024, 1253),
    ("effi", "vit_t", "base", "EvfEffiSamModel", "tiny", "base", 768, 773),
]


def backbone_class(family: str) -> type:
    module = pytest.importorskip(FAMILIES[family].config_module)
    return getattr(module, FAMILIES[family].config_class)


def tiny_model(family: str) -> EvfModel:
    torch.manual_seed(0)
    return EvfModel(EvfModelConfig(backbone_class(family).tiny(), Beit3PromptConfig(Beit3Config.tiny())))


@pytest.fixture
def tokenizer(synth_root: Path) -> Path:
    return synth_root / "tokenizer"


@pytest.fixture
def sam_folder(tmp_path: Path, tokenizer: Path) -> tuple[EvfModel, Path]:
    model = tiny_model("sam")
    folder = tmp_path / "exported"
    save_official_folder(folder, model.config, model.state_dict(), tokenizer)
    return model, folder


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


# ----- round trips ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("dtype", [None, torch.float16])
def test_export_import_export_is_bit_exact(tmp_path, tokenizer, family, dtype):
    model = tiny_model(family)
    first, second = tmp_path / "first", tmp_path / "second"
    names = save_official_folder(first, model.config, model.state_dict(), tokenizer, dtype=dtype)
    loaded = load_official_folder(first)
    assert loaded.config == model.config
    expected = {k: v.to(dtype) if dtype and v.is_floating_point() else v for k, v in model.state_dict().items()}
    assert_same_tensors({k: v.to(expected[k].dtype) for k, v in loaded.state_dict().items()}, expected)
    assert save_official_folder(second, loaded.config, loaded.state_dict(), first, dtype=dtype) == names
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_bin_format_round_trips_the_same_tensors_as_safetensors(tmp_path, tokenizer, sam_folder):
    model, safetensors_folder = sam_folder
    names = save_official_folder(tmp_path / "bin", model.config, model.state_dict(), tokenizer, format="bin")
    assert "pytorch_model.bin" in names and "model.safetensors" not in names
    assert_same_tensors(read_state_dict(tmp_path / "bin"), read_state_dict(safetensors_folder))
    assert (tmp_path / "bin" / CONFIG_FILE).read_bytes() == (safetensors_folder / CONFIG_FILE).read_bytes()
    assert_same_tensors(load_official_folder(tmp_path / "bin").state_dict(), model.state_dict())


@pytest.mark.parametrize("format", ["safetensors", "bin"])
def test_sharded_export_and_import(tmp_path, tokenizer, format):
    model = tiny_model("sam")
    limit = 300_000
    names = save_official_folder(
        tmp_path / "s", model.config, model.state_dict(), tokenizer, format=format, max_shard_size=limit
    )
    stem, suffix = ("model", "safetensors") if format == "safetensors" else ("pytorch_model", "bin")
    shards = sorted(name for name in names if name.startswith(f"{stem}-"))
    assert len(shards) == 8  # 2,284,320 bytes of fp32 tensors, at most 300 kB per shard
    assert shards[0] == f"{stem}-00001-of-00008.{suffix}" and shards[-1] == f"{stem}-00008-of-00008.{suffix}"
    index = json.loads((tmp_path / "s" / f"{stem}.{suffix}.index.json").read_text())
    official = name_map("sam").to_official(model.state_dict())
    assert set(index["weight_map"]) == set(official) and set(index["weight_map"].values()) == set(shards)
    assert index["metadata"]["total_size"] == sum(t.nbytes for t in official.values()) == 2_284_320
    for shard in shards:
        on_disk = read_state_dict(tmp_path / "s" / shard)
        assert sum(t.nbytes for t in on_disk.values()) <= limit or len(on_disk) == 1, shard
    assert_same_tensors(load_official_folder(tmp_path / "s").state_dict(), model.state_dict())


# ----- what the official loader reads --------------------------------------------------------------------
def test_folder_holds_exactly_the_files_and_fields_the_official_loader_reads(sam_folder):
    model, folder = sam_folder
    assert {p.name for p in folder.iterdir()} == {CONFIG_FILE, "model.safetensors", *TOKENIZER_FILES}
    config = json.loads((folder / CONFIG_FILE).read_text())
    assert set(config) == PUBLISHED_FIELDS | {OUR_FIELD}
    assert config["model_type"] == "evf" and config["architectures"] == ["EvfSamModel"]
    assert (config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]) == (0, 2, 1)
    assert config["tie_word_embeddings"] is False and config["torch_dtype"] == "float32"
    assert (config["hidden_size"], config["out_dim"]) == (64, 64)  # tiny: BEiT-3 width 64, prompt width 64
    assert config["sam_scale"] is None and config["mm_extractor_scale"] is None  # no published size
    with safe_open(folder / "model.safetensors", "pt") as file:
        assert file.metadata() == {"format": "pt"}
        keys = set(file.keys())
    assert keys == set(name_map("sam").to_official(model.state_dict()))
    assert "visual_model.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix" in keys  # a buffer
    assert "mm_extractor.beit3.vision_embed.mask_token" in keys  # unused, but the official model has it


def test_added_tokens_travel_with_the_tokenizer(tmp_path, tokenizer):
    multitask = tmp_path / "tokenizer"
    shutil.copytree(tokenizer, multitask)
    (multitask / "added_tokens.json").write_text(json.dumps({"[semantic]": 33}))
    model = tiny_model("sam")
    names = save_official_folder(tmp_path / "out", model.config, model.state_dict(), multitask)
    assert "added_tokens.json" in names
    assert check_tokenizer(tmp_path / "out", vocab_size=256) == 34


@pytest.mark.parametrize(
    ("family", "backbone", "beit", "architecture", "sam_scale", "beit_scale", "width", "keys"), PUBLISHED
)
def test_full_size_model_has_the_published_config_json(
    tmp_path, family, backbone, beit, architecture, sam_scale, beit_scale, width, keys
):
    config = EvfModelConfig(
        getattr(backbone_class(family), backbone)(), Beit3PromptConfig(getattr(Beit3Config, beit)())
    )
    with torch.device("meta"):
        model = EvfModel(config)
    written = official_config(model.config, torch.float16)
    assert {k: written[k] for k in PUBLISHED_FIELDS - {"transformers_version"}} == {
        "architectures": [architecture],
        "bos_token_id": 0,
        "eos_token_id": 2,
        "hidden_size": width,
        "mm_extractor_scale": beit_scale,
        "model_type": "evf",
        "out_dim": 256,
        "pad_token_id": 1,
        "sam_scale": sam_scale,
        "tie_word_embeddings": False,
        "torch_dtype": "float16",
    }
    tensors = official_state_dict(model.config, model.state_dict(), "meta model", torch.float16)
    assert len(tensors) == keys
    assert {t.dtype for t in tensors.values() if t.is_floating_point()} == {torch.float16}
    assert not [key for key in tensors if "gamma" in key or "beta" in key]
    # A published config.json (no field of ours) reads back as the same presets.
    published = {k: v for k, v in written.items() if k != OUR_FIELD}
    (tmp_path / CONFIG_FILE).write_text(json.dumps(published))
    assert read_official_config(tmp_path) == config


# ----- bad input -----------------------------------------------------------------------------------------
def edit_config(folder: Path, **fields) -> None:
    config = json.loads((folder / CONFIG_FILE).read_text())
    config.update(fields)
    (folder / CONFIG_FILE).write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"model_type": "llama"}, r"config\.json: field 'model_type' is 'llama', expected 'evf'"),
        ({"architectures": ["EvfSam3Model"]}, r"config\.json: field 'architectures' is \['EvfSam3Model'\]"),
        ({"architectures": ["EvfSam2Model"]}, r"config\.json: field 'architectures' is \['EvfSam2Model'\]"),
        (
            {"hidden_size": 1024},
            r"config\.json: field 'hidden_size' is 1024, expected 64 from the 'evf_lightning' field",
        ),
        (
            {"sam_scale": "huge"},
            r"config\.json: field 'sam_scale' is 'huge', expected None from the 'evf_lightning' field",
        ),
        ({OUR_FIELD: None}, r"config\.json: field 'sam_scale' is None; EvfSamModel comes in \['huge'\]"),
        ({OUR_FIELD: None, "sam_scale": "giant"}, r"config\.json: field 'sam_scale' is 'giant'"),
        ({OUR_FIELD: {"image_backbone": {"family": "sam", "width": "wide"}}}, r"config\.json field 'evf_lightning'"),
    ],
)
def test_config_json_that_does_not_fit_names_the_file_and_field(sam_folder, fields, message):
    _, folder = sam_folder
    edit_config(folder, **fields)
    with pytest.raises(OfficialFolderError, match=message):
        load_official_folder(folder)


def test_published_scale_names_of_the_wrong_size_are_refused(tmp_path):
    config = EvfModelConfig.evf_sam()
    published = {k: v for k, v in official_config(config, torch.float16).items() if k != OUR_FIELD}
    (tmp_path / CONFIG_FILE).write_text(json.dumps({**published, "mm_extractor_scale": "huge"}))
    with pytest.raises(OfficialFolderError, match=r"field 'mm_extractor_scale' is 'huge'; BEiT-3 comes in"):
        read_official_config(tmp_path)
    (tmp_path / CONFIG_FILE).write_text(json.dumps({**published, "hidden_size": 768}))
    with pytest.raises(OfficialFolderError, match=r"field 'hidden_size' is 768, expected 1024 from the scale names"):
        read_official_config(tmp_path)


def sharded_folder(tmp_path: Path, tokenizer: Path) -> Path:
    model = tiny_model("sam")
    folder = tmp_path / "sharded"
    save_official_folder(folder, model.config, model.state_dict(), tokenizer, max_shard_size="300KB")
    return folder


def test_missing_shard_names_the_index_and_the_shard(tmp_path, tokenizer):
    folder = sharded_folder(tmp_path, tokenizer)
    (folder / "model-00004-of-00008.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors\.index\.json.*model-00004-of-00008\.safetensors"):
        load_official_folder(folder)


def test_mismatched_shape_and_unexpected_key_name_the_shard_and_key(tmp_path, tokenizer):
    from safetensors.torch import save_file

    folder = sharded_folder(tmp_path, tokenizer)
    index_file = folder / "model.safetensors.index.json"
    index = json.loads(index_file.read_text())
    shard = folder / index["weight_map"]["text_hidden_fcs.0.2.weight"]
    tensors = read_state_dict(shard)
    tensors["text_hidden_fcs.0.2.weight"] = torch.zeros(3, 3)
    save_file(tensors, shard, metadata={"format": "pt"})
    with pytest.raises(
        CheckpointMismatchError,
        match=rf"index\.json do not fit .*\['{shard.name}: text_hidden_fcs\.0\.2\.weight \(3, 3\) vs model \(64, 64\)",
    ):
        load_official_folder(folder)
    del tensors["text_hidden_fcs.0.2.weight"]
    tensors["visual_model.memory_encoder.out_proj.weight"] = torch.zeros(3)  # SAM-2's, not SAM's
    save_file(tensors, shard, metadata={"format": "pt"})
    index["weight_map"]["visual_model.memory_encoder.out_proj.weight"] = shard.name
    index_file.write_text(json.dumps(index))
    with pytest.raises(
        CheckpointMismatchError,
        match=rf"1 missing \['text_hidden_fcs\.0\.2\.weight'\], 1 unexpected \['{shard.name}: visual_model\.memory_",
    ):
        load_official_folder(folder)


def test_unreadable_tokenizer_names_the_file(sam_folder):
    _, folder = sam_folder
    model_file = folder / "sentencepiece.bpe.model"
    model_file.write_bytes(model_file.read_bytes()[:100])
    with pytest.raises(OfficialFolderError, match=r"sentencepiece\.bpe\.model: the tokenizer does not load"):
        load_official_folder(folder)
    (folder / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(OfficialFolderError, match=r"tokenizer_config\.json is not JSON"):
        load_official_folder(folder)
    (folder / "special_tokens_map.json").unlink()
    with pytest.raises(OfficialFolderError, match=r"special_tokens_map\.json is missing"):
        load_official_folder(folder)


def test_tokenizer_larger_than_the_vocabulary_is_refused(tokenizer):
    with pytest.raises(OfficialFolderError, match=r"emits 33 token ids but the model holds a vocabulary of 32"):
        check_tokenizer(tokenizer, vocab_size=32)


def test_export_refuses_weights_that_do_not_fit_and_a_folder_with_files(tmp_path, tokenizer, sam_folder):
    model, folder = sam_folder
    state = dict(model.state_dict())
    del state["projector.2.bias"]
    with pytest.raises(
        CheckpointMismatchError, match=r"run\.ckpt do not fit.*1 missing \['text_hidden_fcs\.0\.2\.bias'\]"
    ):
        save_official_folder(tmp_path / "new", model.config, state, tokenizer, source="run.ckpt")
    state["projector.2.bias"] = model.state_dict()["projector.2.bias"]
    state["image_backbone.memory_encoder.x"] = torch.zeros(1)
    with pytest.raises(
        CheckpointMismatchError, match=r"run\.ckpt do not fit.*1 unexpected \['visual_model\.memory_encoder\.x'\]"
    ):
        save_official_folder(tmp_path / "new", model.config, state, tokenizer, source="run.ckpt")
    state["lm_head.weight"] = torch.zeros(1)
    with pytest.raises(
        CheckpointMismatchError, match=r"run\.ckpt: state-dict key 'lm_head\.weight' is not an evf-lightning"
    ):
        save_official_folder(tmp_path / "new", model.config, state, tokenizer, source="run.ckpt")
    assert not (tmp_path / "new").exists() and not list(tmp_path.glob(".new*"))
    with pytest.raises(FileExistsError, match="is not empty"):
        save_official_folder(folder, model.config, model.state_dict(), tokenizer)


def test_shared_and_viewed_tensors_are_written_once_each(tmp_path, tokenizer):
    model = tiny_model("sam")
    state = dict(model.state_dict())
    tied = state["projector.0.weight"]
    state["projector.2.bias"] = tied[0, : state["projector.2.bias"].numel()]  # a view into another tensor
    names = save_official_folder(tmp_path / "out", model.config, state, tokenizer)
    assert "model.safetensors" in names  # safetensors refuses shared storage, so each was given its own
    written = read_state_dict(tmp_path / "out")
    assert torch.equal(written["text_hidden_fcs.0.2.bias"], tied[0, :64])


@pytest.mark.parametrize(
    ("size", "expected"), [(1234, 1234), ("2GB", 2 * 10**9), ("500kb", 500_000), ("1.5GiB", 3 * 2**29), ("77", 77)]
)
def test_shard_sizes_read_as_transformers_reads_them(size, expected):
    assert parse_size(size) == expected


def test_shard_size_that_is_not_a_size_is_refused():
    with pytest.raises(ValueError, match="'two gigs' is not a size"):
        parse_size("two gigs")
