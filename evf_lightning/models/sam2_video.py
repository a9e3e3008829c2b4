"""Zero-shot video segmentation with EVF-SAM2: a text prompt on one frame, SAM-2's memory for all the others.

EVF-SAM2's video inference (hustvl/EVF-SAM `inference_video.py`, `model/evf_sam2_video.py` and its vendored
`sam2_video_predictor.py`) is SAM-2's video predictor with one change: on the prompt frame the projected BEiT-3
feature is the only sparse prompt (`add_new_text`, where SAM-2 would take clicks), so that frame is segmented as
EVF-SAM2 segments an image, with SAM-2's first-click settings (multimask_output_in_sam with zero points):

* image features plus `no_memory_embedding` (directly_add_no_mem_embed); three masks, the best by predicted IoU,
  whatever the image model's `multimask_output`; masks hidden (NO_OBJ_SCORE) where the object score is not
  positive; the object pointer from the chosen mask's token, or `no_object_pointer` when no object is seen;
* that frame's memory is encoded from its *binarised* mask (binarize_mask_from_pts_for_mem_enc: the frame a
  user prompted), and it stays in the memory bank for the whole video.

Every other frame gets no prompt at all (SAM-2's padding point): its lowest-resolution features cross-attend,
through memory attention, to the prompt frame's memory, the memories of the `num_maskmem - 1` frames tracked just
before it (with temporal position encodings) and up to 16 object pointers; its memory is encoded from the sigmoid
of its own mask. So the text reaches those frames only through the memory. That part is transformers'
`Sam2VideoModel`, which reproduces SAM-2's `track_step`, run here on the backbone's own modules (no weight is
copied; the official names stay those of `Sam2ImageBackbone`). As in both, stored memories are kept in bfloat16.

Not reproduced: the official `fill_hole_area=8` post-processing, which needs SAM-2's CUDA connected-components
extension (transformers leaves it out too).
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import chain

import torch
from torch import Tensor
from torch.nn import functional as F
from transformers.models.sam2_video.modeling_sam2_video import (
    NO_OBJ_SCORE,
    Sam2VideoInferenceSession,
    Sam2VideoModel,
)

from evf_lightning.models.evf import BackboneConfig, EvfModel
from evf_lightning.models.image_features import ImageFeatures
from evf_lightning.models.sam2 import MEMORY_DIM, Sam2BackboneConfig, Sam2ImageBackbone

# transformers' session tracks objects by id; EVF-SAM2 prompts one object per video.
OBJECT_ID = 1


def check_video_backbone(config: BackboneConfig) -> None:
    """Raise unless a backbone config can propagate through a video: a SAM-2 one, with object pointers that split.

    Each object pointer enters memory attention as prompt_dim / 64 tokens, 64 wide (SAM-2's `mem_dim`);
    transformers' split needs more than one (every released size has prompt_dim 256).
    """
    if not isinstance(config, Sam2BackboneConfig):
        raise TypeError(
            f"video propagation needs an EVF-SAM2 model (backbone family 'sam2'), not family {config.family!r}"
        )
    if config.prompt_dim <= MEMORY_DIM or config.prompt_dim % MEMORY_DIM:
        raise ValueError(
            f"video propagation needs a SAM-2 prompt_dim that is a multiple of {MEMORY_DIM} above {MEMORY_DIM}; "
            f"this backbone has {config.prompt_dim}"
        )


def video_model(backbone: Sam2ImageBackbone) -> Sam2VideoModel:
    """transformers' `Sam2VideoModel` whose every module and parameter is the backbone's own, in eval mode.

    It is built on the meta device and then given the backbone's parts, so it allocates nothing and holds no
    weight of its own; putting it in eval mode puts those parts in eval mode too (SAM-2 tracks in eval only).
    """
    check_video_backbone(backbone.config)
    with torch.device("meta"):
        model = Sam2VideoModel(backbone.config.to_hf_video())
    shared = {
        "vision_encoder": backbone.image_encoder,
        "shared_image_embedding": backbone.prompt_encoder.shared_embedding,
        "prompt_encoder": backbone.prompt_encoder,
        "mask_decoder": backbone.mask_decoder,
        "no_memory_embedding": backbone.no_memory_embedding,
        **{name: getattr(backbone, name) for name in Sam2ImageBackbone.MEMORY_PARTS},
    }
    for name, part in shared.items():
        setattr(model, name, part)
    unshared = [name for name, t in chain(model.named_parameters(), model.named_buffers()) if t.is_meta]
    if unshared:
        raise RuntimeError(f"Sam2VideoModel has parts the backbone does not provide: {unshared}")
    return model.eval()


class TextPromptedVideo:
    """One video and one object: `condition` a frame with a prompt vector, then `propagate` from it.

    `frames` are the backbone's preprocessed inputs [T, 3, S, S]; they stay on their device (the CPU for a long
    video) and each is moved to the model's device when its turn comes. Outputs of every frame, memories
    included, are kept in `session` (transformers' `Sam2VideoInferenceSession`); `stored` reads one frame's.
    """

    def __init__(self, backbone: Sam2ImageBackbone, frames: Tensor) -> None:
        size = backbone.config.image_size
        if frames.dim() != 4 or tuple(frames.shape[1:]) != (3, size, size) or len(frames) == 0:
            raise ValueError(f"expected preprocessed frames [T, 3, {size}, {size}]; got {tuple(frames.shape)}")
        self.backbone = backbone
        self.model = video_model(backbone)
        parameter = backbone.no_memory_embedding
        self.session = Sam2VideoInferenceSession(
            video=frames,
            video_height=size,
            video_width=size,
            inference_device=parameter.device,
            inference_state_device=parameter.device,
            video_storage_device=frames.device,
            dtype=parameter.dtype,
        )
        self.object = self.session.obj_id_to_idx(OBJECT_ID)

    @property
    def num_frames(self) -> int:
        return self.session.num_frames

    def stored(self, frame: int) -> dict[str, Tensor]:
        """What is kept of a frame: pred_masks, object_pointer, high_res_masks, object_score_logits and its
        memory (maskmem_features, maskmem_pos_enc, flattened to [h*w, 1, 64])."""
        outputs = self.session.output_dict_per_obj[self.object]
        return outputs["cond_frame_outputs"].get(frame) or outputs["non_cond_frame_outputs"][frame]

    @torch.inference_mode()
    def condition(self, frame: int, prompt: Tensor) -> Tensor:
        """Segment `frame` with the prompt vector [1, 1, C] and write its memory; returns its logits [h, w]."""
        if not 0 <= frame < self.num_frames:
            raise IndexError(f"prompt frame {frame} is not in a video of {self.num_frames} frames")
        model, backbone = self.model, self.backbone
        levels, _ = model._prepare_vision_features(self.session, frame, batch_size=1)
        maps = [
            level.permute(1, 2, 0).reshape(1, -1, *size)
            for level, size in zip(levels, model.backbone_feature_sizes, strict=True)
        ]
        features = ImageFeatures(maps[-1] + backbone.no_memory_embedding.reshape(1, -1, 1, 1), maps[:-1])
        masks, iou, tokens, object_score = backbone.decoder_outputs(
            features, torch.zeros(1, dtype=torch.long, device=maps[-1].device), prompt, multimask_output=True
        )
        best = int(iou[0, 0].argmax())
        seen = object_score > 0  # [1, 1, 1]
        low_res = torch.where(seen[..., None], masks[:, :, best], NO_OBJ_SCORE)  # [1, 1, h, w]
        size = backbone.config.image_size
        high_res = F.interpolate(low_res.float(), size=(size, size), mode="bilinear", align_corners=False)
        pointer = torch.where(seen, backbone.object_pointer_proj(tokens[:, :, best]), backbone.no_object_pointer)
        output = {
            "pred_masks": low_res,
            "object_pointer": pointer,
            "high_res_masks": high_res.to(low_res.dtype),
            "object_score_logits": object_score,
        }
        self.session.store_output(self.object, frame, output_value=output, is_conditioning_frame=True)
        model._batch_encode_memories(
            self.session, frame, [self.object], [output["high_res_masks"]], [object_score], [True]
        )
        return low_res[0, 0]

    def propagate(self, start: int, reverse: bool = False) -> Iterator[tuple[int, Tensor]]:
        """(frame index, logits [h, w]) from `start` (a conditioned frame, yielded as it was) to the last frame,
        or back to the first with `reverse`, each frame conditioned on the memory bank as it stands then."""
        for output in self.model.propagate_in_video_iterator(self.session, start_frame_idx=start, reverse=reverse):
            yield output.frame_idx, output.pred_masks[0, 0]


@torch.inference_mode()
def segment_video(
    model: EvfModel, frames: Tensor, beit_pixels: Tensor, input_ids: Tensor, prompt_frame: int = 0
) -> Tensor:
    """Low-resolution mask logits [T, h, w] of the object an expression names, over a whole video.

    `frames` [T, 3, S, S] are the SAM-2 inputs; `beit_pixels` [3, s, s] is the prompt frame's BEiT-3 input and
    `input_ids` [L] its tokens (no padding). The prompt frame is segmented from the text, then the masks are
    propagated forward to the last frame and, from a later prompt frame, backward to the first (EVF-SAM2's own
    script always prompts frame 0). The model is left in eval mode, the only mode SAM-2 tracks in.
    """
    check_video_backbone(model.config.image_backbone)
    model.eval()
    backbone = model.image_backbone
    video = TextPromptedVideo(backbone, frames)
    device = backbone.no_memory_embedding.device
    attention_mask = torch.ones(1, input_ids.numel(), dtype=torch.bool, device=device)
    prompt = model.encode_prompts(beit_pixels[None].to(device), input_ids[None].to(device), attention_mask)
    logits: list[Tensor | None] = [None] * video.num_frames
    logits[prompt_frame] = video.condition(prompt_frame, prompt)
    for reverse in (False, True):
        for index, frame_logits in video.propagate(prompt_frame, reverse):
            logits[index] = frame_logits
    return torch.stack(logits)
