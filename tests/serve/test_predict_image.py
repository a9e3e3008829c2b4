"""`evf predict-image` and `Predictor` against the evaluation path, on a checkpoint and on its exported folder."""

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evf_lightning.cli import main
from evf_lightning.serve.images import read_image
from evf_lightning.serve.predictor import ModelSourceError, PromptError, load_predictor


def mask_file(output: Path, image: Path, index: int) -> Path:
    (path,) = (output / "masks").glob(f"{image.stem}_{index}_*.png")
    return path


def test_predict_image_writes_the_masks_evaluation_scores(tmp_path, trained_run, evaluated, capsys):
    """Two val images, each with its own expressions, through the CLI: every mask file equals the eval mask."""
    for number, item in enumerate(evaluated[:2]):
        output = tmp_path / f"out{number}"
        prompts = "[" + ", ".join(f'"{text}"' for text in item["texts"]) + "]"
        main(["predict-image", "--model", str(trained_run["ckpt"]), "--image", str(item["path"]),
              "--prompt", prompts, "--output", str(output), "--device", "cpu"])  # fmt: skip
        for index, expected in enumerate(item["masks"]):
            written = np.array(Image.open(mask_file(output, item["path"], index)))
            assert set(np.unique(written)) <= {0, 255}
            np.testing.assert_array_equal(written == 255, expected)
            overlay = Image.open(next((output / "overlays").glob(f"{item['path'].stem}_{index}_*.png")))
            height, width = expected.shape
            assert overlay.width == width and overlay.height > height  # the caption band sits under the image
    assert f"{len(evaluated[1]['texts'])} masks from {trained_run['ckpt']}" in capsys.readouterr().out


def test_an_exported_folder_predicts_what_its_checkpoint_predicts(tmp_path, trained_run, evaluated):
    exported = tmp_path / "exported"
    main(["export", str(trained_run["ckpt"]), str(exported)])
    predictor = load_predictor(exported, family="sam", device="cpu")
    for item in evaluated[:3]:
        np.testing.assert_array_equal(predictor.predict(read_image(item["path"]), item["texts"]), item["masks"])


def test_images_of_any_mode_and_orientation(tmp_path, trained_run, evaluated):
    """Grey, RGBA and EXIF-rotated files give masks of the upright image's size, as their RGB twin would."""
    predictor = load_predictor(trained_run["ckpt"], device="cpu")
    item = evaluated[0]
    rgb = read_image(item["path"])
    prompts = item["texts"][:1]
    grey = tmp_path / "grey.png"
    Image.fromarray(rgb).convert("L").save(grey)
    assert predictor.predict(read_image(grey), prompts).shape == (1, *rgb.shape[:2])
    opaque = tmp_path / "opaque.png"
    Image.fromarray(rgb).convert("RGBA").save(opaque)
    np.testing.assert_array_equal(predictor.predict(read_image(opaque), prompts), item["masks"][:1])
    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the stored pixels are the upright image turned 90 degrees counter-clockwise
    Image.fromarray(np.rot90(rgb).copy()).save(rotated, exif=exif, quality=100)
    upright = read_image(rotated)
    assert upright.shape == rgb.shape
    assert np.abs(upright.astype(int) - rgb).mean() < 8  # the same picture, up to JPEG loss
    assert predictor.predict(upright, prompts).shape == (1, *rgb.shape[:2])


def test_bad_input_is_named(tmp_path, trained_run, evaluated):
    image = str(evaluated[0]["path"])
    model = str(trained_run["ckpt"])
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    with pytest.raises(SystemExit, match=re.escape(f"cannot read image {broken}")):
        main(["predict-image", "--model", model, "--image", str(broken), "--prompt", "the red circle"])
    with pytest.raises(SystemExit, match="prompt 1 is empty"):
        main(["predict-image", "--model", model, "--image", image, "--prompt", '["the red circle", "  "]'])
    with pytest.raises(SystemExit, match=r"holds an EVF-SAM \(SAM ViT\) model .* not the EVF-SAM2 .* asked for"):
        main(["predict-image", "--model", model, "--image", image, "--prompt", "the red circle", "--family", "sam2"])
    with pytest.raises(SystemExit, match=re.escape(f"{tmp_path} is neither an exported model folder")):
        main(["predict-image", "--model", str(tmp_path), "--image", image, "--prompt", "the red circle"])
    predictor = load_predictor(trained_run["ckpt"], device="cpu")
    with pytest.raises(PromptError, match="give a list of one or more prompts"):
        predictor.predict(read_image(evaluated[0]["path"]), [])
    with pytest.raises(ModelSourceError, match="variant family 'sam3'"):
        load_predictor(trained_run["ckpt"], family="sam3")
