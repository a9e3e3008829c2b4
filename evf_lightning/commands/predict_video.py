"""`evf predict-video`: an expression on one frame of a video, EVF-SAM2's memory for the others; masks and overlays.

The propagation itself is `evf_lightning.models.sam2_video.segment_video`; this verb reads the frames, the model
and the tokenizer, preprocesses as the model's backbone config says, and writes one mask and one overlay per frame.

Preprocessing follows the backbone config, that is the recipe the checkpoint was trained with
(evf-sam-recipe.md §2). EVF-SAM2's own video script differs there: SAM-2's `load_video_frames` stretches every
frame to the input size with PIL's bicubic filter whatever the checkpoint, and BEiT-3 always reads frame 0.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")


def predict_video(
    *,
    frames: Path,
    prompt: str,
    model: Path,
    output: Path,
    tokenizer: Path | None = None,
    run_config: Path | None = None,
    prompt_frame: int = 0,
    device: str | None = None,
) -> list[Path]:
    """Segment through a video the object an expression names on one of its frames (EVF-SAM2, zero-shot).

    The expression is read on one frame, where it prompts the mask decoder; SAM-2's memory then carries that
    object forward to the last frame and, from a later prompt frame, back to the first. Frames are the JPEG and
    PNG files of FRAMES in natural order (2.jpg before 10.jpg). OUTPUT gets masks/<frame>.png (0 or 255, the
    frame's size) and overlays/<frame>.png. The model loads as `evf predict-image` loads it.

    Args:
        frames: folder of video frames (.jpg, .jpeg, .png).
        prompt: the referring expression, e.g. "the red car on the left".
        model: an exported EVF-SAM2 folder (`evf export`, or the Hub's YxZhang/evf-sam2 layout) or a checkpoint
            of `evf fit` (file, or sharded FSDP/DeepSpeed folder; its run folder names the config and tokenizer).
        output: folder to write masks/ and overlays/ into (created if missing).
        tokenizer: tokenizer folder for a checkpoint (default: the run's data.tokenizer).
        run_config: the run's config.yaml, or a model YAML (configs/model/*.yaml), for a checkpoint (default:
            its hyper-parameters, else the config.yaml found beside it).
        prompt_frame: index, in natural order, of the frame the expression is read on.
        device: where the model runs; default: cuda if available, else cpu.

    Returns:
        The mask files written, in frame order.
    """
    import torch

    from evf_lightning.data.transforms import upscale_mask_logits
    from evf_lightning.models.sam2_video import check_video_backbone, segment_video
    from evf_lightning.serve.predictor import ModelSourceError, PromptError, load_predictor

    paths = frame_paths(frames)
    if not 0 <= prompt_frame < len(paths):
        raise SystemExit(f"evf predict-video: --prompt_frame {prompt_frame} is not one of the {len(paths)} frames")
    try:
        predictor = load_predictor(
            model,
            tokenizer=tokenizer,
            run_config=run_config,
            device=device,
            require=lambda config: check_video_backbone(config.image_backbone),
        )
        (input_ids,) = predictor.tokenize([prompt])
    except (ModelSourceError, PromptError) as error:
        raise SystemExit(f"evf predict-video: {error}") from error
    pixels, resized, sizes = [], [], []
    for path in paths:
        image = read_frame(path)
        frame_pixels, resized_hw = predictor.sam_preprocess(image)
        pixels.append(frame_pixels)
        resized.append(resized_hw)
        sizes.append(image.shape[:2])
    beit_pixels = predictor.beit_preprocess(read_frame(paths[prompt_frame]))

    backbone = predictor.config.image_backbone
    logits = segment_video(predictor.model, torch.stack(pixels), beit_pixels, torch.tensor(input_ids), prompt_frame)

    (output / "masks").mkdir(parents=True, exist_ok=True)
    (output / "overlays").mkdir(parents=True, exist_ok=True)
    written, areas = [], []
    for index, path in enumerate(paths):
        full = upscale_mask_logits(
            logits[index : index + 1], backbone.image_size, resized[index], sizes[index], backbone.resize
        )
        mask = (full[0] > 0).cpu().numpy()
        written.append(write_mask_and_overlay(read_frame(path), mask, output, path.stem))
        areas.append(float(mask.mean()))
    found = sum(area > 0 for area in areas)
    print(f"{len(paths)} frames from {frames}; {prompt!r} read on frame {prompt_frame} ({paths[prompt_frame].name})")
    print(f"object found in {found} of {len(paths)} frames; mean mask area {100 * np.mean(areas):.1f}% of the frame")
    print(f"masks: {output / 'masks'}  overlays: {output / 'overlays'}")
    return written


def frame_paths(folder: Path) -> list[Path]:
    """The frame files of a folder in natural order; one name per stem, since outputs are named by stem."""
    if not folder.is_dir():
        raise SystemExit(f"evf predict-video: frames folder {folder} does not exist")
    paths = sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES),
        key=lambda p: [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", p.name)],
    )
    if not paths:
        raise SystemExit(f"evf predict-video: frames folder {folder} has no {'/'.join(FRAME_SUFFIXES)} files")
    stems = [p.stem for p in paths]
    twice = sorted({stem for stem in stems if stems.count(stem) > 1})
    if twice:
        raise SystemExit(f"evf predict-video: frames in {folder} share the names {twice} (outputs are named by them)")
    return paths


def read_frame(path: Path) -> np.ndarray:
    """uint8 RGB [H, W, 3], as predict-image reads images; an unreadable file is named."""
    from evf_lightning.serve.images import ImageReadError, read_image

    try:
        return read_image(path)
    except ImageReadError as error:
        raise SystemExit(f"evf predict-video: {error}") from error


def write_mask_and_overlay(image: np.ndarray, mask: np.ndarray, output: Path, name: str) -> Path:
    """OUTPUT/masks/NAME.png (0 or 255) and OUTPUT/overlays/NAME.png (the mask painted over the frame)."""
    from evf_lightning.serve.overlay import paint_mask, write_image, write_mask

    write_image(paint_mask(image, mask), output / "overlays" / f"{name}.png")
    return write_mask(mask, output / "masks" / f"{name}.png")
