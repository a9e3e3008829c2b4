"""The web page of a trained model: upload an image, type referring expressions, see the masks.

The page predicts through `Predictor`, so what it shows is what `evf predict-image` writes and what evaluation
scored. It is served on this machine only and reaches nothing outside it: no Gradio analytics, no share tunnel,
no server-side rendering process; Gradio 6 serves its theme's fonts itself (tests/serve/test_demo.py refuses and
fails on any request the page makes to another host).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from evf_lightning.serve.images import ImageReadError, read_image
from evf_lightning.serve.overlay import mask_image, overlay_with_caption
from evf_lightning.serve.predictor import Predictor, PromptError

if TYPE_CHECKING:
    import gradio as gr

# Element ids of the page's parts, for people who style it and for the browser test that drives it.
IMAGE_ID = "image"
PROMPTS_ID = "prompts"
BUTTON_ID = "segment"
OVERLAYS_ID = "overlays"
MASKS_ID = "masks"
SUMMARY_ID = "summary"

# Gradio's "share" button posts outputs to Hugging Face; this page keeps everything on this machine.
GALLERY_BUTTONS = ["download", "download_all", "fullscreen"]
NO_IMAGE = "No image: upload one first."
NO_PROMPT = 'No prompt: type what to segment, one referring expression per line, e.g. "the red circle".'


def _gradio():
    """gradio, imported with its usage analytics off (it reads the switch at import and at launch)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    import gradio

    return gradio


def split_prompts(text: str) -> list[str]:
    """One prompt per non-blank line of the prompt box, stripped."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def segment(predictor: Predictor, image_path: str | None, prompts_text: str) -> tuple[list, list, str]:
    """(overlays, masks, summary) for the page; bad input is refused with the message the user will read."""
    gr = _gradio()
    if image_path is None:
        raise gr.Error(NO_IMAGE)
    prompts = split_prompts(prompts_text or "")
    if not prompts:
        raise gr.Error(NO_PROMPT)
    try:
        predictor.tokenize(prompts)
        pixels = read_image(Path(image_path))
    except (PromptError, ImageReadError) as error:
        raise gr.Error(str(error)) from error
    pairs = list(zip(prompts, predictor.predict(pixels, prompts), strict=True))
    overlays = [(overlay_with_caption(pixels, mask, text), text) for text, mask in pairs]
    binary = [(mask_image(mask), text) for text, mask in pairs]
    summary = "\n".join(f"- {text!r}: {100 * mask.mean():.1f}% of the image" for text, mask in pairs)
    return overlays, binary, summary


def build_demo(predictor: Predictor) -> gr.Blocks:
    """The page, bound to `predictor`; launch it with `launch_demo`."""
    gr = _gradio()
    with gr.Blocks(title="EVF-SAM demo", analytics_enabled=False) as demo:
        gr.Markdown(f"# EVF-SAM: segment what the text names\nModel: `{predictor.source}`")
        with gr.Row():
            with gr.Column():
                image = gr.Image(
                    label="Image", type="filepath", image_mode=None, buttons=["fullscreen"], elem_id=IMAGE_ID
                )
                prompts = gr.Textbox(
                    label="Prompts (one per line)", lines=3, placeholder="the red circle", elem_id=PROMPTS_ID
                )
                button = gr.Button("Segment", variant="primary", elem_id=BUTTON_ID)
            with gr.Column():
                # PNG, not Gradio's default WebP: a mask must come back exactly as predicted.
                overlays = gr.Gallery(
                    label="Overlays", format="png", columns=1, buttons=GALLERY_BUTTONS, elem_id=OVERLAYS_ID
                )
                masks = gr.Gallery(
                    label="Masks (PNG, 255 on the object)",
                    format="png",
                    columns=2,
                    buttons=GALLERY_BUTTONS,
                    elem_id=MASKS_ID,
                )
                summary = gr.Markdown(elem_id=SUMMARY_ID)
        button.click(lambda path, text: segment(predictor, path, text), [image, prompts], [overlays, masks, summary])
    return demo


def launch_demo(demo: gr.Blocks, *, host: str = "127.0.0.1", port: int = 7860) -> str:
    """Start serving `demo` on host:port in the background and return its URL (`demo.block_thread()` waits for
    Ctrl-C, `demo.close()` stops it). Errors are shown in the page; the server stays up."""
    _, url, _ = demo.launch(
        server_name=host,
        server_port=port,
        share=False,
        show_error=True,
        prevent_thread_lock=True,
        quiet=True,  # Gradio's banner would suggest share=True, which this page never uses
        ssr_mode=False,
        pwa=False,
        mcp_server=False,
    )
    return url
