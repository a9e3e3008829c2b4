"""EVF-SAM2 video propagation on a tiny model: one output per frame, the prompt frame segmented as an image,
and the memory really used (and bounded) for every other frame."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from jsonargparse import ArgumentParser

from evf_lightning.data.transforms import SamPreprocess
from evf_lightning.models.evf import EvfModel, EvfModelConfig
from evf_lightning.models.sam2 import Sam2ImageBackbone
from evf_lightning.models.sam2_video import NO_OBJ_SCORE, TextPromptedVideo, segment_video, video_model

REPO = Path(__file__).resolve().parents[2]
FRAMES, SIZE, SIDE = 8, 128, 32  # frames; SAM-2 input; low-res mask side (SIZE / 4)


def load_model_config(path: Path) -> EvfModelConfig:
    parser = ArgumentParser()
    parser.add_argument("--model", type=EvfModelConfig)
    return parser.instantiate(parser.parse_args(["--model", str(path)])).model


def video_config(**backbone: object) -> EvfModelConfig:
    """evf_sam2_tiny.yaml with prompt_dim 128: object pointers must split into 64-wide memory tokens."""
    config = load_model_config(REPO / "configs/model/evf_sam2_tiny.yaml")
    return replace(config, image_backbone=replace(config.image_backbone, prompt_dim=128, **backbone))


def lively(model: EvfModel, object_score_bias: float = 10.0) -> EvfModel:
    """Random weights under which the prompt and the memory visibly move the masks.

    Zero-initialised tensors (no-memory / no-object embeddings, temporal encodings) get values, every norm and
    bias some noise, the prompt a larger scale, and the object-score bias decides whether the object is seen.
    """
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in model.image_backbone.parameters():
            if not parameter.any():
                parameter.normal_(0, 0.2)
            elif parameter.dim() <= 1:
                parameter.add_(torch.randn_like(parameter), alpha=0.1)
        model.projector[2].weight.mul_(20)
        model.image_backbone.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(object_score_bias)
    return model.eval()


def moving_disc(frames: int = FRAMES, height: int = 96, width: int = 120) -> list[np.ndarray]:
    """uint8 RGB frames of a red disc moving right and down over a colour gradient."""
    y, x = np.mgrid[:height, :width]
    background = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 90)], axis=-1)
    video = []
    for t in range(frames):
        disc = (x - 20 - 9 * t) ** 2 + (y - 25 - 4 * t) ** 2 < 15**2
        video.append(np.where(disc[..., None], np.array([220, 30, 30]), background).astype(np.uint8))
    return video


@pytest.fixture(scope="module")
def model() -> EvfModel:
    torch.manual_seed(0)
    return lively(EvfModel(video_config()))


@pytest.fixture(scope="module")
def frames(model) -> torch.Tensor:
    preprocess = SamPreprocess(size=SIZE, resize=model.config.image_backbone.resize)
    return torch.stack([preprocess(frame)[0] for frame in moving_disc()])


@pytest.fixture(scope="module")
def prompts() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Two (BEiT-3 pixels, token ids) expressions."""
    side = video_config().prompt_encoder.image_size
    torch.manual_seed(2)
    return [
        (torch.randn(3, side, side), torch.tensor([0, 17, 42, 2])),
        (torch.randn(3, side, side), torch.tensor([0, 99, 2])),
    ]


def prompt_vector(model: EvfModel, beit: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.encode_prompts(beit[None], ids[None], torch.ones(1, ids.numel(), dtype=torch.bool))


def track(model: EvfModel, frames: torch.Tensor, prompt: torch.Tensor, edit=None) -> tuple[torch.Tensor, list[dict]]:
    """Forward propagation from frame 0, optionally editing the prompt frame's stored outputs first; returns the
    logits and what memory attention received on each tracked frame."""
    video = TextPromptedVideo(model.image_backbone, frames)
    received: list[dict] = []
    hook = model.image_backbone.memory_attention.register_forward_pre_hook(
        lambda module, args, kwargs: received.append(kwargs), with_kwargs=True
    )
    try:
        video.condition(0, prompt)
        if edit is not None:
            edit(video.stored(0))
        logits = torch.stack([frame_logits for _, frame_logits in video.propagate(0)])
    finally:
        hook.remove()
    return logits, received


def test_one_output_per_frame_and_the_prompt_frame_is_segmented_as_an_image(model, frames, prompts):
    beit, ids = prompts[0]
    logits = segment_video(model, frames, beit, ids)
    assert logits.shape == (FRAMES, SIDE, SIDE) and torch.isfinite(logits).all()
    assert all((frame > 0).any() and (frame < 0).any() for frame in logits)  # a mask, not a blank, on every frame
    # The prompt frame: the image path with EVF-SAM2's video settings (best of three masks by predicted IoU).
    backbone = model.image_backbone
    with torch.no_grad():
        image = backbone.decode(backbone.encode(frames[:1]), torch.tensor([0]), prompt_vector(model, beit, ids), True)
    torch.testing.assert_close(logits[0], image[0])
    # Alone, a frame is a one-frame video: its own prompt frame.
    alone = torch.cat([segment_video(model, frames[t : t + 1], beit, ids) for t in range(FRAMES)])
    torch.testing.assert_close(alone[0], logits[0])
    differences = (alone[1:] - logits[1:]).abs().amax(dim=(1, 2))
    assert (differences > 0.1).all(), differences


def test_the_expression_reaches_later_frames_only_through_the_memory(model, frames, prompts):
    """Tracked frames get no prompt: two expressions give two videos only because their memories differ."""
    first, second = (prompt_vector(model, *prompt) for prompt in prompts)
    tracked, _ = track(model, frames, first)
    other, _ = track(model, frames, second)
    assert ((tracked[1:] - other[1:]).abs().amax(dim=(1, 2)) > 5e-4).all()
    # ... and with the second expression's memory in place of the first's, the first video becomes the second.
    video = TextPromptedVideo(model.image_backbone, frames)
    video.condition(0, second)
    swapped, _ = track(model, frames, first, edit=lambda stored: stored.update(video.stored(0)))
    torch.testing.assert_close(swapped[1:], other[1:])


# Pointers are 2 of the ~200 tokens memory attention reads here, so they move the masks less.
@pytest.mark.parametrize(("part", "least_change"), [("maskmem_features", 1e-3), ("object_pointer", 1e-5)])
def test_editing_the_prompt_frame_memory_changes_every_later_frame(model, frames, prompts, part, least_change):
    prompt = prompt_vector(model, *prompts[0])
    tracked, _ = track(model, frames, prompt)

    def zero(stored: dict) -> None:
        stored[part] = torch.zeros_like(stored[part])

    edited, _ = track(model, frames, prompt, edit=zero)
    torch.testing.assert_close(edited[0], tracked[0])  # the prompt frame's own mask is already made
    assert ((edited[1:] - tracked[1:]).abs().amax(dim=(1, 2)) > least_change).all()


def test_memory_bank_holds_the_prompt_frame_and_the_last_num_maskmem_minus_one_frames(frames, prompts):
    torch.manual_seed(0)
    model = lively(EvfModel(video_config(num_maskmem=3)))
    video = TextPromptedVideo(model.image_backbone, frames)
    received: list[dict] = []
    hook = model.image_backbone.memory_attention.register_forward_pre_hook(
        lambda module, args, kwargs: received.append(kwargs), with_kwargs=True
    )
    video.condition(0, prompt_vector(model, *prompts[0]))
    list(video.propagate(0))
    hook.remove()
    tokens = (SIZE // 16) ** 2  # one memory: one 64-wide token per cell of the 8 x 8 embedding grid
    assert len(received) == FRAMES - 1
    for t, inputs in enumerate(received, start=1):
        pointers = inputs["num_object_pointer_tokens"]
        assert pointers == 2 * t  # one pointer per earlier frame, split into 128 / 64 tokens
        memory = inputs["memory"][:-pointers]
        remembered = [0, *range(max(1, t - 2), t)]  # the prompt frame, then the 2 latest, oldest first
        assert memory.shape == (len(remembered) * tokens, 1, 64)
        for slot, frame in enumerate(remembered):
            stored = video.stored(frame)["maskmem_features"]
            assert stored.dtype == torch.bfloat16  # as SAM-2 keeps its memory bank
            torch.testing.assert_close(memory[slot * tokens : (slot + 1) * tokens], stored.float())


def test_propagates_backward_from_a_later_prompt_frame(model, frames, prompts):
    (beit, ids), other = prompts
    logits = segment_video(model, frames, beit, ids, prompt_frame=4)
    assert logits.shape == (FRAMES, SIDE, SIDE) and torch.isfinite(logits).all()
    torch.testing.assert_close(logits[4], segment_video(model, frames[4:5], beit, ids)[0])
    changed = (logits - segment_video(model, frames, *other, prompt_frame=4)).abs().amax(dim=(1, 2))
    assert (changed[:4] > 5e-4).all() and (changed[5:] > 5e-4).all()


def test_an_object_never_seen_gives_empty_masks_and_the_no_object_pointer(frames, prompts):
    torch.manual_seed(0)
    model = lively(EvfModel(video_config()), object_score_bias=-100.0)
    video = TextPromptedVideo(model.image_backbone, frames[:3])
    video.condition(0, prompt_vector(model, *prompts[0]))
    logits = torch.stack([frame_logits for _, frame_logits in video.propagate(0)])
    assert (logits == NO_OBJ_SCORE).all()
    for t in range(3):
        torch.testing.assert_close(video.stored(t)["object_pointer"][0], model.image_backbone.no_object_pointer)


def test_the_video_model_runs_on_the_backbone_own_parameters(model):
    """No weight is copied or left behind: transformers' video model holds exactly the backbone's parameters."""
    backbone = model.image_backbone.train()
    shell = video_model(backbone)
    ours = {id(p) for p in backbone.parameters()}
    assert {id(p) for p in shell.parameters()} == ours
    assert len(list(shell.parameters())) == len(ours)
    assert not any(module.training for module in shell.modules())  # SAM-2 tracks in eval mode only
    model.eval()


def test_models_that_cannot_propagate_are_refused_with_the_reason(frames, prompts):
    beit, ids = prompts[0]
    with pytest.raises(TypeError, match=r"backbone family 'sam2'.*not family 'sam'"):
        segment_video(EvfModel(EvfModelConfig.tiny()), frames, beit, ids)
    tiny = EvfModel(load_model_config(REPO / "configs/model/evf_sam2_tiny.yaml"))
    with pytest.raises(ValueError, match="prompt_dim that is a multiple of 64 above 64; this backbone has 32"):
        segment_video(tiny, frames, beit, ids)
    assert isinstance(tiny.image_backbone, Sam2ImageBackbone)


def test_bad_frames_and_prompt_frame_are_named(model, frames, prompts):
    beit, ids = prompts[0]
    with pytest.raises(ValueError, match=r"expected preprocessed frames \[T, 3, 128, 128\]; got \(2, 3, 64, 64\)"):
        segment_video(model, frames[:2, :, :64, :64], beit, ids)
    with pytest.raises(IndexError, match="prompt frame 8 is not in a video of 8 frames"):
        segment_video(model, frames, beit, ids, prompt_frame=8)
