"""The fast paths are really taken: SDPA in every attention of SAM and BEiT-3, compile wired in place."""

import pytest
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from evf_lightning.models.evf import EvfModel, EvfModelConfig
from evf_lightning.models.sam import SamBackboneConfig
from evf_lightning.training.module import EvfLitModule

SDPA = "aten::scaled_dot_product_attention"


def sdpa_calls(run) -> int:
    with profile(activities=[ProfilerActivity.CPU]) as profiler, torch.no_grad():
        run()
    return sum(event.count for event in profiler.key_averages() if event.key == SDPA)


def tiny_model(attn_implementation: str) -> EvfModel:
    torch.manual_seed(0)
    config = EvfModelConfig.tiny()
    backbone = SamBackboneConfig.tiny()
    backbone = SamBackboneConfig(**{**backbone.__dict__, "attn_implementation": attn_implementation})
    return EvfModel(EvfModelConfig(backbone, config.prompt_encoder)).eval()


def test_every_attention_of_sam_and_beit3_runs_sdpa_and_eager_does_not():
    model = tiny_model("sdpa")
    pixels, small = torch.randn(2, 3, 128, 128), torch.randn(2, 3, 64, 64)
    ids = torch.randint(3, 200, (3, 6))
    mask, image_index = torch.ones_like(ids, dtype=torch.bool), torch.tensor([0, 0, 1])
    features = model.encode_image(pixels)
    prompts = model.encode_prompts(small[image_index], ids, mask)

    backbone = model.config.image_backbone
    # one per ViT block (windowed ones with their relative-position bias as the mask)
    assert sdpa_calls(lambda: model.encode_image(pixels)) == backbone.depth
    beit3_layers = model.config.prompt_encoder.beit3.depth
    assert sdpa_calls(lambda: model.encode_prompts(small[image_index], ids, mask)) == beit3_layers
    # two-way transformer: self, token->image and image->token per layer, then the final token->image
    layers = model.image_backbone.mask_decoder.transformer.config.num_hidden_layers
    assert sdpa_calls(lambda: model.image_backbone.decode(features, image_index, prompts)) == 3 * layers + 1

    eager = tiny_model("eager")
    eager.load_state_dict(model.state_dict())
    assert sdpa_calls(lambda: eager.encode_image(pixels)) == 0
    torch.testing.assert_close(eager.encode_image(pixels).embedding, features.embedding, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not hasattr(nn.Module, "compile"), reason="this torch has no in-place nn.Module.compile")
def test_compile_encoders_wraps_both_encoders_in_place_and_keeps_the_state_dict_names():
    torch.manual_seed(0)
    plain = EvfLitModule(EvfModelConfig.tiny())
    torch.manual_seed(0)
    compiled = EvfLitModule(EvfModelConfig.tiny(), compile_encoders=True)
    assert compiled.model.image_backbone.image_encoder._compiled_call_impl is not None
    assert compiled.model.prompt_encoder._compiled_call_impl is not None
    assert plain.model.prompt_encoder._compiled_call_impl is None
    assert compiled.model.image_backbone.mask_decoder._compiled_call_impl is None
    assert list(compiled.state_dict()) == list(plain.state_dict())
