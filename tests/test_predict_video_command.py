"""`evf predict-video` through the CLI: generated frames of a moving disc, a tiny EVF-SAM2 from an official
folder or from a Lightning checkpoint, one mask and one overlay per frame; bad input named."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from evf_lightning.cli import main
from evf_lightning.data.synthetic import write_synthetic_tokenizer
from evf_lightning.data.transforms import Beit3Preprocess, SamPreprocess, upscale_mask_logits
from evf_lightning.hub.official_folder import config_from_dict, config_to_dict, save_official_folder
from evf_lightning.models.evf import EvfModel
from evf_lightning.models.sam2_video import segment_video

REPO = Path(__file__).resolve().parents[1]
HEIGHT, WIDTH = 72, 100
# Frame files in natural order (lexical order would put 10 before 2), JPEG and PNG mixed.
NAMES = ["2.png", "4.jpg", "6.png", "8.jpg", "10.png", "12.jpg", "14.png", "16.jpg"]
PROMPT = "the red circle"


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    """A red disc moving right over a colour gradient."""
    folder = tmp_path_factory.mktemp("frames")
    y, x = np.mgrid[:HEIGHT, :WIDTH]
    background = np.stack([x * 255 // WIDTH, y * 255 // HEIGHT, np.full_like(x, 90)], axis=-1)
    for t, name in enumerate(NAMES):
        disc = (x - 18 - 8 * t) ** 2 + (y - 30 - 2 * t) ** 2 < 13**2
        Image.fromarray(np.where(disc[..., None], [220, 30, 30], background).astype(np.uint8)).save(folder / name)
    return folder


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict:
    """A tiny EVF-SAM2 (prompt_dim 128, the object always seen) as an official folder and as `evf fit` writes it."""
    root = tmp_path_factory.mktemp("weights")
    tokenizer = root / "tokenizer"
    write_synthetic_tokenizer(tokenizer, ["the red circle", "a blue square on the left", "the green triangle"])
    model_yaml = yaml.safe_load((REPO / "configs/model/evf_sam2_tiny.yaml").read_text())
    model_yaml["image_backbone"]["prompt_dim"] = 128
    config = config_from_dict(model_yaml, "test")
    torch.manual_seed(0)
    model = EvfModel(config).eval()
    with torch.no_grad():
        model.image_backbone.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(10.0)
    save_official_folder(root / "official", config, model.state_dict(), tokenizer)
    (root / "model.yaml").write_text(yaml.safe_dump(config_to_dict(config)))
    state = {f"model.{key}": value for key, value in model.state_dict().items()}
    torch.save({"state_dict": state, "global_step": 2}, root / "last.ckpt")
    return {"model": model, "tokenizer": tokenizer, "root": root}


def predict(frames: Path, model: Path, output: Path, *more: str) -> None:
    main(
        [
            "predict-video",
            "--frames",
            str(frames),
            "--prompt",
            PROMPT,
            "--model",
            str(model),
            "--output",
            str(output),
            *more,
        ]
    )


def read(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.array(image)


def expected_masks(weights: dict, frames: Path, prompt_frame: int) -> list[np.ndarray]:
    """What the command must write: `segment_video` on the frames, preprocessed as the backbone config says."""
    from transformers import XLMRobertaTokenizer

    model = weights["model"]
    backbone = model.config.image_backbone
    images = [np.array(Image.open(frames / name).convert("RGB")) for name in NAMES]
    inputs = [SamPreprocess(backbone.image_size, backbone.resize)(image) for image in images]
    ids = XLMRobertaTokenizer.from_pretrained(str(weights["tokenizer"]))(PROMPT)["input_ids"]
    beit = Beit3Preprocess(model.config.prompt_encoder.beit3.img_size)(images[prompt_frame])
    logits = segment_video(model, torch.stack([p for p, _ in inputs]), beit, torch.tensor(ids), prompt_frame)
    return [
        upscale_mask_logits(logits[t : t + 1], backbone.image_size, hw, (HEIGHT, WIDTH), backbone.resize)[0].numpy() > 0
        for t, (_, hw) in enumerate(inputs)
    ]


def test_official_folder_gives_one_mask_and_one_overlay_per_frame_at_its_size(frames, weights, tmp_path, capsys):
    out = tmp_path / "out"
    predict(frames, weights["root"] / "official", out)
    printed = capsys.readouterr().out
    assert f"8 frames from {frames}; 'the red circle' read on frame 0 (2.png)" in printed
    stems = [Path(name).stem for name in NAMES]
    assert sorted(p.name for p in (out / "masks").iterdir()) == sorted(f"{stem}.png" for stem in stems)
    assert sorted(p.name for p in (out / "overlays").iterdir()) == sorted(f"{stem}.png" for stem in stems)
    expected = expected_masks(weights, frames, prompt_frame=0)
    for t, name in enumerate(NAMES):
        mask, overlay = read(out / "masks" / f"{stems[t]}.png"), read(out / "overlays" / f"{stems[t]}.png")
        frame = np.array(Image.open(frames / name).convert("RGB"))
        assert mask.shape == (HEIGHT, WIDTH) and set(np.unique(mask)) <= {0, 255}
        np.testing.assert_array_equal(mask == 255, expected[t])
        assert 0 < expected[t].mean() < 1  # a real mask: some of the frame, not all of it
        assert overlay.shape == (HEIGHT, WIDTH, 3)
        np.testing.assert_array_equal(overlay[mask == 0], frame[mask == 0])
        painted = np.round(0.5 * frame[mask == 255] + 0.5 * np.array([255, 0, 0])).astype(np.uint8)
        np.testing.assert_array_equal(overlay[mask == 255], painted)


def test_checkpoint_with_model_yaml_gives_the_same_masks_from_a_later_prompt_frame(frames, weights, tmp_path):
    root = weights["root"]
    from_folder, from_ckpt = tmp_path / "folder", tmp_path / "ckpt"
    predict(frames, root / "official", from_folder, "--prompt_frame", "3")
    ckpt_args = [
        "--run_config",
        str(root / "model.yaml"),
        "--tokenizer",
        str(root / "tokenizer"),
        "--prompt_frame",
        "3",
    ]
    predict(frames, root / "last.ckpt", from_ckpt, *ckpt_args)
    expected = expected_masks(weights, frames, prompt_frame=3)
    for t, name in enumerate(NAMES):
        stem = Path(name).stem
        np.testing.assert_array_equal(read(from_folder / "masks" / f"{stem}.png") == 255, expected[t])
        np.testing.assert_array_equal(
            read(from_ckpt / "masks" / f"{stem}.png"), read(from_folder / "masks" / f"{stem}.png")
        )


def test_an_empty_frames_folder_is_named(weights, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no frames here")
    with pytest.raises(SystemExit, match=f"frames folder {tmp_path / 'empty'} has no .jpg/.jpeg/.png files"):
        predict(tmp_path / "empty", weights["root"] / "official", tmp_path / "out")


def test_an_unreadable_frame_is_named(frames, weights, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in NAMES[:3]:
        (broken / name).write_bytes((frames / name).read_bytes())
    (broken / "5.jpg").write_bytes(b"not a JPEG")
    with pytest.raises(SystemExit, match=f"cannot read image {broken / '5.jpg'}"):
        predict(broken, weights["root"] / "official", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("model_yaml", "message"),
    [
        ("configs/model/evf_tiny.yaml", "needs an EVF-SAM2 model \\(backbone family 'sam2'\\), not family 'sam'"),
        (
            "configs/model/evf_sam2_tiny.yaml",
            "needs a SAM-2 prompt_dim that is a multiple of 64 above 64; this backbone has 32",
        ),
    ],
)
def test_a_model_that_cannot_propagate_is_refused_naming_why(frames, weights, tmp_path, model_yaml, message):
    ckpt, tokenizer = weights["root"] / "last.ckpt", weights["root"] / "tokenizer"
    with pytest.raises(SystemExit, match=f"{ckpt}: video propagation {message}"):
        predict(frames, ckpt, tmp_path / "out", "--run_config", str(REPO / model_yaml), "--tokenizer", str(tokenizer))


def test_missing_weights_and_a_prompt_frame_outside_the_video_are_named(frames, weights, tmp_path):
    root = weights["root"]
    with pytest.raises(SystemExit, match=r"model\.yaml is neither an exported model folder .* nor a usable checkpoint"):
        predict(frames, root / "model.yaml", tmp_path / "out", "--tokenizer", str(root / "tokenizer"))
    with pytest.raises(SystemExit, match="--prompt_frame 8 is not one of the 8 frames"):
        predict(frames, root / "official", tmp_path / "out", "--prompt_frame", "8")


def test_a_checkpoint_tokenizer_larger_than_the_model_vocabulary_is_named_before_the_model_is_built(
    frames, weights, tmp_path
):
    root = weights["root"]
    small_vocabulary = yaml.safe_load((root / "model.yaml").read_text())
    small_vocabulary["prompt_encoder"]["beit3"]["vocab_size"] = 10
    (tmp_path / "small.yaml").write_text(yaml.safe_dump(small_vocabulary))
    args = ["--run_config", str(tmp_path / "small.yaml"), "--tokenizer", str(root / "tokenizer")]
    with pytest.raises(SystemExit, match=r"tokenizer: the tokenizer emits \d+ token ids but the model of .*last\.ckpt"):
        predict(frames, root / "last.ckpt", tmp_path / "out", *args)
    assert not (tmp_path / "out").exists()
