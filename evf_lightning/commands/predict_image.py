"""`evf predict-image`: masks and overlays for images and referring expressions, from a trained or exported model."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal


def predict_image(
    *,
    model: Path,
    image: str | list[str],
    prompt: str | list[str],
    output: Path = Path("predictions"),
    family: Literal["sam", "sam2", "effi"] | None = None,
    tokenizer: Path | None = None,
    run_config: Path | None = None,
    device: str | None = None,
) -> list[Path]:
    """Segment, in every image, the object each prompt names; several prompts of one image share its encoding.

    MODEL is an exported folder (`evf export`, or the Hub's YxZhang/evf-sam* layout) or a checkpoint of `evf fit`
    (its run folder names the model config and tokenizer). Images may be of any size and mode (grey, palette,
    RGBA over white, CMYK); EXIF orientation is applied. OUTPUT gets, per image and prompt,
    masks/<image>_<i>_<prompt>.png (0 or 255, the image's size) and overlays/<image>_<i>_<prompt>.png (the mask
    tinted over the image, the prompt written under it).

    Args:
        model: exported model folder, or Lightning checkpoint (file, or sharded FSDP/DeepSpeed folder).
        image: an image file, or several: `--image a.jpg --image+ b.jpg` or `--image "[a.jpg, b.jpg]"`.
        prompt: a referring expression, e.g. "zebra top left", or several (`--prompt+ TEXT`, or a list as for
            images); each is applied to every image.
        output: folder to write masks/ and overlays/ into (created if missing).
        family: the variant expected (sam: EVF-SAM, sam2: EVF-SAM2, effi: EVF-Effi-SAM); a model of another
            family is refused before its weights are read.
        tokenizer: tokenizer folder for a checkpoint (default: the run's data.tokenizer).
        run_config: the run's config.yaml for a checkpoint (default: found beside it).
        device: where the model runs; default: cuda if available, else cpu.

    Returns:
        The mask files written, image by image, prompt by prompt.
    """
    from evf_lightning.serve.images import ImageReadError, read_image
    from evf_lightning.serve.overlay import overlay_with_caption, write_image, write_mask
    from evf_lightning.serve.predictor import ModelSourceError, PromptError, load_predictor

    image = [Path(path) for path in ([image] if isinstance(image, str) else image)]
    prompt = [prompt] if isinstance(prompt, str) else prompt
    stems = [path.stem for path in image]
    twice = sorted({stem for stem in stems if stems.count(stem) > 1})
    if twice:
        raise SystemExit(f"evf predict-image: images share the names {twice} (outputs are named by them)")
    try:
        images = [read_image(path) for path in image]
        predictor = load_predictor(model, family=family, tokenizer=tokenizer, run_config=run_config, device=device)
        predictor.tokenize(prompt)
    except (ImageReadError, ModelSourceError, PromptError) as error:
        raise SystemExit(f"evf predict-image: {error}") from error
    written = []
    for path, pixels in zip(image, images, strict=True):
        masks = predictor.predict(pixels, prompt)
        for index, (text, mask) in enumerate(zip(prompt, masks, strict=True)):
            name = f"{path.stem}_{index}_{slug(text)}.png"
            written.append(write_mask(mask, output / "masks" / name))
            write_image(overlay_with_caption(pixels, mask, text), output / "overlays" / name)
            print(f"{path.name}  {text!r}: {100 * mask.mean():.1f}% of the image")
    print(f"{len(written)} masks from {predictor.source}: {output / 'masks'}  overlays: {output / 'overlays'}")
    return written


def slug(text: str, length: int = 40) -> str:
    """A file-name-safe form of a prompt: lower case words joined by '-'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:length] or "prompt"
