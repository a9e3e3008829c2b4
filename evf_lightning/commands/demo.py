"""`evf demo`: a web page on this machine that segments what a prompt names in an uploaded image."""

from __future__ import annotations

from pathlib import Path
from typing import Literal


def demo(
    *,
    model: Path,
    host: str = "127.0.0.1",
    port: int = 7860,
    family: Literal["sam", "sam2", "effi"] | None = None,
    tokenizer: Path | None = None,
    run_config: Path | None = None,
    device: str | None = None,
) -> None:
    """Serve a web page (Gradio) where a user uploads an image, types prompts and sees the masks and overlays.

    The page predicts exactly what `evf predict-image` writes. It listens on 127.0.0.1 (this machine only) unless
    HOST says otherwise, is never shared through a tunnel, sends no analytics, and shows bad input (no image, an
    empty prompt, an unreadable upload) in the page. Stop it with Ctrl-C.

    Args:
        model: exported model folder, or Lightning checkpoint of `evf fit` (file, or sharded folder).
        host: address to listen on; 0.0.0.0 opens the page to the network, at your own risk.
        port: port to listen on.
        family: the variant expected (sam, sam2, effi); a model of another family is refused before loading.
        tokenizer: tokenizer folder for a checkpoint (default: the run's data.tokenizer).
        run_config: the run's config.yaml for a checkpoint (default: found beside it).
        device: where the model runs; default: cuda if available, else cpu.
    """
    from evf_lightning.serve.demo import build_demo, launch_demo
    from evf_lightning.serve.predictor import ModelSourceError, load_predictor

    try:
        predictor = load_predictor(model, family=family, tokenizer=tokenizer, run_config=run_config, device=device)
    except ModelSourceError as error:
        raise SystemExit(f"evf demo: {error}") from error
    page = build_demo(predictor)
    url = launch_demo(page, host=host, port=port)
    print(f"evf demo: {predictor.source} at {url} (Ctrl-C stops)", flush=True)
    page.block_thread()
