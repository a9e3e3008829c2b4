"""Starting from published weights: SAM and BEiT-3 checkpoints, and whole official EVF folders."""

import json

import pytest
import torch
from safetensors.torch import save_file

from evf_lightning.hub.official_names import name_map
from evf_lightning.hub.pretrained import CheckpointMismatchError, PretrainedWeights, load_pretrained, read_state_dict
from evf_lightning.models.evf import EvfModel, EvfModelConfig


@pytest.fixture
def source() -> EvfModel:
    torch.manual_seed(0)
    return EvfModel(EvfModelConfig.tiny())


def fresh() -> EvfModel:
    torch.manual_seed(1)
    return EvfModel(EvfModelConfig.tiny())


def assert_same(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (key, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, msg=key)


def test_segment_anything_and_unilm_beit3_checkpoints_load(tmp_path, source):
    official = name_map("sam").to_official(source.state_dict())
    sam = {k.removeprefix("visual_model."): v for k, v in official.items() if k.startswith("visual_model.")}
    torch.save({"model": sam}, tmp_path / "sam.pth")
    beit3 = {k.removeprefix("mm_extractor."): v for k, v in official.items() if k.startswith("mm_extractor.")}
    beit3["mlm_head.weight"] = torch.zeros(3)  # heads of the pre-training checkpoint are ignored
    torch.save({"model": beit3}, tmp_path / "beit3.pth")
    model = fresh()
    load_pretrained(model, PretrainedWeights(sam=str(tmp_path / "sam.pth"), beit3=str(tmp_path / "beit3.pth")))
    assert_same(model.image_backbone, source.image_backbone)
    assert_same(model.prompt_encoder, source.prompt_encoder)


def test_official_sharded_safetensors_folder_loads(tmp_path, source):
    official = {k: v.contiguous() for k, v in name_map("sam").to_official(source.state_dict()).items()}
    keys = sorted(official)
    shards = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    for name, shard_keys in shards.items():
        save_file({k: official[k] for k in shard_keys}, tmp_path / name, metadata={"format": "pt"})
    index = {"weight_map": {k: name for name, shard_keys in shards.items() for k in shard_keys}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    model = fresh()
    load_pretrained(model, PretrainedWeights(evf=str(tmp_path)))
    assert_same(model, source)


def test_missing_shard_and_mismatched_shapes_are_named(tmp_path, source):
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "model-1.safetensors"}}))
    with pytest.raises(FileNotFoundError, match=r"model-1\.safetensors"):
        read_state_dict(tmp_path)
    official = name_map("sam").to_official(source.state_dict())
    official["text_hidden_fcs.0.2.weight"] = torch.zeros(3, 3)
    del official["text_hidden_fcs.0.2.bias"]
    torch.save(official, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointMismatchError, match=r"pytorch_model\.bin.*projector\.2\.bias.*projector\.2\.weight"):
        load_pretrained(fresh(), PretrainedWeights(evf=str(tmp_path / "pytorch_model.bin")))


def test_a_pickle_with_code_is_refused_by_the_weights_loader(tmp_path):
    import os

    class Exploit:
        def __reduce__(self):
            return (os.system, ("true",))

    torch.save({"model": Exploit()}, tmp_path / "evil.pth")
    with pytest.raises(Exception, match=r"(?i)weights only|unsupported global"):
        read_state_dict(tmp_path / "evil.pth")
