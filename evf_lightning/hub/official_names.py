"""The one name map per backbone family between our module tree and the official EVF-SAM checkpoint keys.

Ours uses transformers' module names under `image_backbone.`; the official checkpoints use the upstream
names under `visual_model.` (reference/checkpoints.md §1, §3, §8). Each rule is a pair of key prefixes,
official first, with `{i}`/`{n}` standing for an integer; the first rule whose prefix matches rewrites
that prefix and keeps the rest of the key. The same table serves both directions, so import and export
cannot drift apart. A family's table is its own rules followed by the rules every variant shares.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from typing import TypeVar

V = TypeVar("V")

_SAM_IMAGE = ("visual_model.image_encoder.", "image_backbone.image_encoder.")
_SAM_PROMPT = ("visual_model.prompt_encoder.", "image_backbone.prompt_encoder.")
_SAM_DECODER = ("visual_model.mask_decoder.", "image_backbone.mask_decoder.")


def _under(parent: tuple[str, str], official: str, ours: str) -> tuple[str, str]:
    return parent[0] + official, parent[1] + ours


Rules = tuple[tuple[str, str], ...]

SAM_RULES: Rules = (
    _under(_SAM_IMAGE, "blocks.{i}.norm{n}.", "layers.{i}.layer_norm{n}."),
    _under(_SAM_IMAGE, "blocks.{i}.", "layers.{i}."),
    _under(_SAM_IMAGE, "patch_embed.proj.", "patch_embed.projection."),
    _under(_SAM_IMAGE, "neck.0.", "neck.conv1."),
    _under(_SAM_IMAGE, "neck.1.", "neck.layer_norm1."),
    _under(_SAM_IMAGE, "neck.2.", "neck.conv2."),
    _under(_SAM_IMAGE, "neck.3.", "neck.layer_norm2."),
    _under(_SAM_PROMPT, "pe_layer.positional_encoding_gaussian_matrix", "shared_embedding.positional_embedding"),
    _under(_SAM_PROMPT, "point_embeddings.{i}.", "point_embed.{i}."),
    _under(_SAM_PROMPT, "mask_downscaling.0.", "mask_embed.conv1."),
    _under(_SAM_PROMPT, "mask_downscaling.1.", "mask_embed.layer_norm1."),
    _under(_SAM_PROMPT, "mask_downscaling.3.", "mask_embed.conv2."),
    _under(_SAM_PROMPT, "mask_downscaling.4.", "mask_embed.layer_norm2."),
    _under(_SAM_PROMPT, "mask_downscaling.6.", "mask_embed.conv3."),
    _under(_SAM_DECODER, "transformer.layers.{i}.norm{n}.", "transformer.layers.{i}.layer_norm{n}."),
    _under(_SAM_DECODER, "transformer.norm_final_attn.", "transformer.layer_norm_final_attn."),
    _under(_SAM_DECODER, "output_upscaling.0.", "upscale_conv1."),
    _under(_SAM_DECODER, "output_upscaling.1.", "upscale_layer_norm."),
    _under(_SAM_DECODER, "output_upscaling.3.", "upscale_conv2."),
    _under(_SAM_DECODER, "output_hypernetworks_mlps.{i}.layers.0.", "output_hypernetworks_mlps.{i}.proj_in."),
    _under(_SAM_DECODER, "output_hypernetworks_mlps.{i}.layers.1.", "output_hypernetworks_mlps.{i}.layers.0."),
    _under(_SAM_DECODER, "output_hypernetworks_mlps.{i}.layers.2.", "output_hypernetworks_mlps.{i}.proj_out."),
    _under(_SAM_DECODER, "iou_prediction_head.layers.0.", "iou_prediction_head.proj_in."),
    _under(_SAM_DECODER, "iou_prediction_head.layers.1.", "iou_prediction_head.layers.0."),
    _under(_SAM_DECODER, "iou_prediction_head.layers.2.", "iou_prediction_head.proj_out."),
)

# SAM-2 (checkpoints.md §4, §8): sam2 names official, transformers' Sam2/Sam2Video names ours. The fuser's
# layer scale is `weight` in the EVF checkpoints (`gamma` in facebook's, which transformers 4.x renames).
_SAM2_TRUNK = ("visual_model.image_encoder.trunk.", "image_backbone.image_encoder.backbone.")
_SAM2_NECK = ("visual_model.image_encoder.neck.", "image_backbone.image_encoder.neck.")
_SAM2_PROMPT = ("visual_model.sam_prompt_encoder.", "image_backbone.prompt_encoder.")
_SAM2_DECODER = ("visual_model.sam_mask_decoder.", "image_backbone.mask_decoder.")
_SAM2_MEMORY_ATTENTION = ("visual_model.memory_attention.", "image_backbone.memory_attention.")
_SAM2_MEMORY_ENCODER = ("visual_model.memory_encoder.", "image_backbone.memory_encoder.")


def _three_layer_mlp(parent: tuple[str, str], official: str, ours: str | None = None) -> Rules:
    """The original's MLP `layers.0/1/2` is transformers' `proj_in/layers.0/proj_out`."""
    return tuple(
        _under(parent, f"{official}.layers.{index}.", f"{ours or official}.{layer}.")
        for index, layer in enumerate(("proj_in", "layers.0", "proj_out"))
    )


SAM2_RULES: Rules = (
    _under(_SAM2_TRUNK, "blocks.{i}.norm{n}.", "blocks.{i}.layer_norm{n}."),
    _under(_SAM2_TRUNK, "blocks.{i}.mlp.layers.0.", "blocks.{i}.mlp.proj_in."),
    _under(_SAM2_TRUNK, "blocks.{i}.mlp.layers.1.", "blocks.{i}.mlp.proj_out."),
    _under(_SAM2_TRUNK, "patch_embed.proj.", "patch_embed.projection."),
    _SAM2_TRUNK,
    _under(_SAM2_NECK, "convs.{i}.conv.", "convs.{i}."),
    _under(_SAM2_PROMPT, "pe_layer.positional_encoding_gaussian_matrix", "shared_embedding.positional_embedding"),
    _under(_SAM2_PROMPT, "point_embeddings.{i}.", "point_embed.{i}."),
    _under(_SAM2_PROMPT, "mask_downscaling.0.", "mask_embed.conv1."),
    _under(_SAM2_PROMPT, "mask_downscaling.1.", "mask_embed.layer_norm1."),
    _under(_SAM2_PROMPT, "mask_downscaling.3.", "mask_embed.conv2."),
    _under(_SAM2_PROMPT, "mask_downscaling.4.", "mask_embed.layer_norm2."),
    _under(_SAM2_PROMPT, "mask_downscaling.6.", "mask_embed.conv3."),
    _SAM2_PROMPT,
    _under(_SAM2_DECODER, "transformer.layers.{i}.norm{n}.", "transformer.layers.{i}.layer_norm{n}."),
    _under(_SAM2_DECODER, "transformer.layers.{i}.mlp.layers.0.", "transformer.layers.{i}.mlp.proj_in."),
    _under(_SAM2_DECODER, "transformer.layers.{i}.mlp.layers.1.", "transformer.layers.{i}.mlp.proj_out."),
    *(
        _under(_SAM2_DECODER, f"transformer.layers.{{i}}.{attn}.out_proj.", f"transformer.layers.{{i}}.{attn}.o_proj.")
        for attn in ("self_attn", "cross_attn_token_to_image", "cross_attn_image_to_token")
    ),
    _under(
        _SAM2_DECODER,
        "transformer.final_attn_token_to_image.out_proj.",
        "transformer.final_attn_token_to_image.o_proj.",
    ),
    _under(_SAM2_DECODER, "transformer.norm_final_attn.", "transformer.layer_norm_final_attn."),
    _under(_SAM2_DECODER, "output_upscaling.0.", "upscale_conv1."),
    _under(_SAM2_DECODER, "output_upscaling.1.", "upscale_layer_norm."),
    _under(_SAM2_DECODER, "output_upscaling.3.", "upscale_conv2."),
    *_three_layer_mlp(_SAM2_DECODER, "output_hypernetworks_mlps.{i}"),
    *_three_layer_mlp(_SAM2_DECODER, "iou_prediction_head"),
    *_three_layer_mlp(_SAM2_DECODER, "pred_obj_score_head"),
    _SAM2_DECODER,
    ("visual_model.no_mem_embed", "image_backbone.no_memory_embedding"),
    ("visual_model.no_mem_pos_enc", "image_backbone.no_memory_positional_encoding"),
    ("visual_model.no_obj_ptr", "image_backbone.no_object_pointer"),
    ("visual_model.maskmem_tpos_enc", "image_backbone.memory_temporal_positional_encoding"),
    *_three_layer_mlp(("visual_model.", "image_backbone."), "obj_ptr_proj", "object_pointer_proj"),
    _under(_SAM2_MEMORY_ATTENTION, "layers.{i}.self_attn.out_proj.", "layers.{i}.self_attn.o_proj."),
    _under(_SAM2_MEMORY_ATTENTION, "layers.{i}.cross_attn_image.out_proj.", "layers.{i}.cross_attn_image.o_proj."),
    _under(_SAM2_MEMORY_ATTENTION, "layers.{i}.norm{n}.", "layers.{i}.layer_norm{n}."),
    _under(_SAM2_MEMORY_ATTENTION, "norm.", "layer_norm."),
    # The mask downsampler's Sequential (conv, norm, GELU) x 4 then a conv is transformers' four layers + final_conv.
    *(
        _under(
            _SAM2_MEMORY_ENCODER,
            f"mask_downsampler.encoder.{3 * layer + offset}.",
            f"mask_downsampler.layers.{layer}.{part}.",
        )
        for layer in range(4)
        for offset, part in enumerate(("conv", "layer_norm"))
    ),
    _under(_SAM2_MEMORY_ENCODER, "mask_downsampler.encoder.12.", "mask_downsampler.final_conv."),
    _under(_SAM2_MEMORY_ENCODER, "pix_feat_proj.", "feature_projection."),
    _under(_SAM2_MEMORY_ENCODER, "fuser.layers.{i}.weight", "memory_fuser.layers.{i}.scale"),
    _under(_SAM2_MEMORY_ENCODER, "fuser.layers.{i}.dwconv.", "memory_fuser.layers.{i}.depthwise_conv."),
    _under(_SAM2_MEMORY_ENCODER, "fuser.layers.{i}.norm.", "memory_fuser.layers.{i}.layer_norm."),
    _under(_SAM2_MEMORY_ENCODER, "fuser.layers.{i}.pwconv{n}.", "memory_fuser.layers.{i}.pointwise_conv{n}."),
    _under(_SAM2_MEMORY_ENCODER, "out_proj.", "projection."),
)

# EfficientSAM (checkpoints.md §5) is written here with the official module names: only the shared rules apply.
EFFI_RULES: Rules = ()

SHARED_RULES: Rules = (
    ("visual_model.", "image_backbone."),
    ("mm_extractor.", "prompt_encoder."),
    ("text_hidden_fcs.0.", "projector."),
)

FAMILY_RULES: dict[str, Rules] = {"sam": SAM_RULES, "sam2": SAM2_RULES, "effi": EFFI_RULES}


class UnmappedKeyError(KeyError):
    """A state-dict key that no rule of the official name map covers."""


class NameMap:
    """Official <-> our keys for one backbone family (`EvfModelConfig.image_backbone.family`)."""

    def __init__(self, family: str) -> None:
        if family not in FAMILY_RULES:
            raise KeyError(f"no official name map for backbone family {family!r}; known: {sorted(FAMILY_RULES)}")
        self.family = family
        self.rules: Rules = FAMILY_RULES[family] + SHARED_RULES
        self._compiled = tuple(self._compile(direction) for direction in (0, 1))

    def _compile(self, direction: int) -> tuple[tuple[re.Pattern[str], str], ...]:
        """Rules as (regex on the source prefix, format string for the target prefix)."""
        compiled = []
        for rule in self.rules:
            source, target = rule[direction], rule[1 - direction]
            pattern = re.escape(source).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{n\}", r"(?P<n>\d+)")
            compiled.append((re.compile(pattern), target))
        return tuple(compiled)

    def _rename(self, key: str, direction: int) -> str:
        for pattern, target in self._compiled[direction]:
            match = pattern.match(key)
            if match:
                return target.format(**match.groupdict()) + key[match.end() :]
        side = "official" if direction == 0 else "evf-lightning"
        raise UnmappedKeyError(
            f"state-dict key {key!r} is not an {side} {self.family} EVF key: no name-map rule covers it"
        )

    def official_key(self, key: str) -> str:
        """Our key -> the official checkpoint key."""
        return self._rename(key, 1)

    def our_key(self, key: str) -> str:
        """Official checkpoint key -> our key."""
        return self._rename(key, 0)

    def to_official(self, state_dict: Mapping[str, V]) -> dict[str, V]:
        return {self.official_key(k): v for k, v in state_dict.items()}

    def from_official(self, state_dict: Mapping[str, V]) -> dict[str, V]:
        return {self.our_key(k): v for k, v in state_dict.items()}


@cache
def name_map(family: str) -> NameMap:
    return NameMap(family)
