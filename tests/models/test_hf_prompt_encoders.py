"""The transformers prompt encoders behind BEiT-3's interface: tiny random builds, config parsing, local weights."""

from pathlib import Path

import pytest
import torch
import transformers

from evf_lightning.hub.pretrained import PretrainedWeights, load_pretrained
from evf_lightning.models.evf import EvfModel, EvfModelConfig
from evf_lightning.models.hf_prompt_encoder import (
    ClipPromptConfig,
    HfTextPromptConfig,
    TransformerSizes,
    ViltPromptConfig,
)
from evf_lightning.models.sam import SamBackboneConfig
from evf_lightning.training.lightning_cli import EvfCLI, model_config

QUICKSTART = Path(__file__).resolve().parents[2] / "configs/experiments/quickstart.yaml"
ENCODERS = {
    "bert": HfTextPromptConfig(architecture="bert"),
    "gpt2": HfTextPromptConfig(architecture="gpt2"),
    "llama": HfTextPromptConfig(architecture="llama"),
    "clip_text": ClipPromptConfig(fusion="text"),
    "clip_late": ClipPromptConfig(fusion="late"),
    "vilt": ViltPromptConfig(),
}
WIDTHS = {"clip_late": 128}


def evf(prompt_encoder, seed: int = 0) -> EvfModel:
    torch.manual_seed(seed)
    return EvfModel(EvfModelConfig(SamBackboneConfig.tiny(image_size=64), prompt_encoder)).eval()


def inputs(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 256, (2, 7), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)), ids, mask


@pytest.mark.parametrize("name", ENCODERS)
def test_each_encoder_prompts_the_mask_decoder_and_reads_the_expression(name):
    model = evf(ENCODERS[name])
    pixels, ids, mask = inputs(0)
    feature = model.prompt_encoder(pixels, ids, mask)
    assert feature.shape == (2, WIDTHS.get(name, 64)) and model.projector[0].in_features == feature.shape[1]
    assert model.encode_prompts(pixels, ids, mask).shape == (2, 1, 64)
    _, other_ids, _ = inputs(1)
    assert (model.prompt_encoder(pixels, other_ids, mask) - feature).abs().max() > 1e-4
    # padding is masked: changing a padded id changes nothing
    padded = ids.clone()
    padded[1, 6] = 5
    torch.testing.assert_close(model.prompt_encoder(pixels, padded, mask), feature, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["clip_late", "vilt"])
def test_image_reading_encoders_see_the_image(name):
    model = evf(ENCODERS[name])
    pixels, ids, mask = inputs(0)
    assert (
        model.prompt_encoder(pixels.flip(-1), ids, mask) - model.prompt_encoder(pixels, ids, mask)
    ).abs().max() > 1e-4


def test_a_kind_given_on_the_command_line_parses_and_sets_the_image_size_of_the_data():
    clip = '{"class_path": "evf_lightning.models.hf_prompt_encoder.ClipPromptConfig", "init_args": {"fusion": "late"}}'
    config = EvfCLI(args=["--config", str(QUICKSTART), "--model.model.prompt_encoder", clip], run=False).config
    encoder = model_config(config.model.model).prompt_encoder
    assert (encoder.kind, encoder.fusion) == ("clip", "late")
    assert config.data.beit_image_size == 32  # CLIP's vision size, linked as BEiT-3's is


def save_reference(name: str, folder: Path) -> None:
    """A transformers model of the encoder's sizes, saved as a Hugging Face folder (what users download)."""
    torch.manual_seed(7)
    sizes = TransformerSizes().as_kwargs()
    if name == "bert":
        reference = transformers.BertModel(transformers.BertConfig(**sizes))
    else:
        vision = {"image_size": 32, "patch_size": 8, "hidden_size": 64, "num_hidden_layers": 2,
                  "num_attention_heads": 4, "intermediate_size": 128}  # fmt: skip
        reference = transformers.CLIPModel(transformers.CLIPConfig(text_config=sizes, vision_config=vision))
    reference.save_pretrained(folder)


@pytest.mark.parametrize("name", ["bert", "clip_late"])
def test_real_weights_load_from_a_local_folder(tmp_path, name):
    save_reference(name, tmp_path)
    loaded = evf(ENCODERS[name], seed=1)
    load_pretrained(loaded, PretrainedWeights(prompt_encoder=str(tmp_path)))
    reference = evf(ENCODERS[name], seed=2)
    pixels, ids, mask = inputs()
    assert (loaded.prompt_encoder(pixels, ids, mask) - reference.prompt_encoder(pixels, ids, mask)).abs().max() > 1e-3
    load_pretrained(reference, PretrainedWeights(prompt_encoder=str(tmp_path)))
    torch.testing.assert_close(loaded.prompt_encoder(pixels, ids, mask), reference.prompt_encoder(pixels, ids, mask))


def test_beit3_weights_for_another_encoder_are_refused():
    with pytest.raises(ValueError, match=r"model\.init\.beit3"):
        load_pretrained(evf(ENCODERS["bert"]), PretrainedWeights(beit3="x.pth"))
