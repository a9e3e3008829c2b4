"""`evf demo`'s page driven in Debian's headless Chromium: the mask it shows is the evaluation path's mask, bad
input is shown in the page, the server keeps serving, and the page asks nothing of any host but its own."""

import io
import os
import re
import shutil
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from evf_lightning.serve.demo import (
    BUTTON_ID,
    IMAGE_ID,
    MASKS_ID,
    NO_IMAGE,
    NO_PROMPT,
    OVERLAYS_ID,
    PROMPTS_ID,
    SUMMARY_ID,
    build_demo,
    launch_demo,
)
from evf_lightning.serve.predictor import load_predictor

# Debian's chromium (`apt-get install chromium`); EVF_TEST_CHROMIUM points elsewhere on other systems.
CHROMIUM = os.environ.get("EVF_TEST_CHROMIUM", "/usr/bin/chromium")
# Headless and quiet: no GPU, no sandbox (CI runs as root), and none of Chromium's own calls home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MISSING = f"no browser at {CHROMIUM} (Debian: apt-get install chromium; .ci/run installs it)"
# A machine without it skips the browser tests (before the trained run is spent); CI must run them.
needs_chromium = pytest.mark.skipif(shutil.which(CHROMIUM) is None and not os.environ.get("CI"), reason=MISSING)
LOOPBACK = "127.0.0.1"
TIMEOUT_MS = 20_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def demo_url(trained_run: dict) -> Iterator[str]:
    """The demo of the trained run's checkpoint, served in this process on a free loopback port."""
    demo = build_demo(load_predictor(trained_run["ckpt"], device="cpu"))
    url = launch_demo(demo, host=LOOPBACK, port=free_port())
    assert urlsplit(url).hostname == LOOPBACK
    assert not demo.analytics_enabled and demo.share_url is None
    yield url
    demo.close()


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"the browser test must run in CI: {MISSING}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, demo_url: str) -> Iterator:
    """A fresh page of the demo; every request it makes to another host is refused and recorded."""
    elsewhere: list[str] = []

    def only_loopback(route) -> None:
        if urlsplit(route.request.url).hostname == LOOPBACK:
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    context.route("**/*", only_loopback)
    page = context.new_page()
    page.goto(demo_url)
    yield page
    context.close()
    assert elsewhere == [], "the page reached beyond this machine"


def segment(page, image, prompts: str) -> None:
    page.locator(f"#{IMAGE_ID} input[type=file]").set_input_files(str(image))
    page.locator(f"#{PROMPTS_ID} textarea").fill(prompts)
    page.locator(f"#{BUTTON_ID}").click()


def shown_masks(page, count: int) -> list[np.ndarray]:
    """The mask images the page shows, fetched through the page from their img src, once `count` are there."""
    images = page.locator(f"#{MASKS_ID} img")
    images.nth(count - 1).wait_for()
    sources = [images.nth(index).get_attribute("src") for index in range(images.count())]
    assert len(sources) == count
    return [np.array(Image.open(io.BytesIO(page.request.get(source).body()))) for source in sources]


@needs_chromium
def test_the_page_shows_the_masks_evaluation_gives(page, evaluated):
    """Every prompt of a val image, one per line: each mask shown equals the eval path's mask, pixel for pixel."""
    item = evaluated[1]
    segment(page, item["path"], "\n".join(item["texts"]))
    masks = shown_masks(page, len(item["texts"]))
    for shown, expected in zip(masks, item["masks"], strict=True):
        assert set(np.unique(shown)) <= {0, 255}
        np.testing.assert_array_equal(shown == 255, expected)
    assert page.locator(f"#{OVERLAYS_ID} img").count() == len(item["texts"])
    summary = page.locator(f"#{SUMMARY_ID}").inner_text()
    for text, expected in zip(item["texts"], item["masks"], strict=True):
        assert f"{text!r}: {100 * expected.mean():.1f}% of the image" in summary


@needs_chromium
def test_bad_input_is_shown_and_the_server_keeps_serving(page, evaluated, tmp_path):
    """No image, a blank prompt box, a file that is no image: each is shown in the page; then a good request works."""
    item = evaluated[0]
    page.locator(f"#{PROMPTS_ID} textarea").fill(item["texts"][0])
    page.locator(f"#{BUTTON_ID}").click()
    page.get_by_text(NO_IMAGE).wait_for()
    segment(page, item["path"], "  \n")
    page.get_by_text(NO_PROMPT).wait_for()
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    segment(page, broken, item["texts"][0])
    page.get_by_text("cannot identify image file").wait_for()
    segment(page, item["path"], item["texts"][0])
    (shown,) = shown_masks(page, 1)
    np.testing.assert_array_equal(shown == 255, item["masks"][0])


def test_the_verb_names_a_bad_model_before_serving(tmp_path):
    from evf_lightning.cli import main

    with pytest.raises(SystemExit, match=re.escape(f"evf demo: {tmp_path} is neither an exported model folder")):
        main(["demo", "--model", str(tmp_path), "--port", str(free_port())])
