"""Where a tiny EVF checkpoint loses the words: linear probes of its prompt vectors and its image features.

Which cue words a tiny model trained on `evf data synth` data has learned (`evf grounding --by_cue true`) says
nothing of why. This script asks two narrower questions on freshly generated scenes, each answered by a ridge
classifier fitted on three quarters of the samples and scored on the rest:

* prompt: can the shape word and the colour word of an expression be read back from its prompt vector?
* image: can the shape and colour of an object be read from the SAM image embedding at its centre?

If the image features hold a cue that the prompt does not, the prompt encoder is what to change.

    python scripts/probe_tiny_model.py runs/<exp>/<run>/checkpoints/best-step2000.ckpt --tokenizer data/synth/tokenizer
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from evf_lightning.data import synthetic
from evf_lightning.data.batch import pad_token_ids
from evf_lightning.serve.predictor import Predictor, load_predictor


def ridge_accuracy(features: np.ndarray, labels: Sequence[str], penalty: float = 1e-2) -> float:
    """Held-out accuracy of a one-vs-rest ridge classifier trained on the first three quarters."""
    classes = sorted(set(labels))
    targets = np.eye(len(classes))[[classes.index(label) for label in labels]]
    x = np.hstack([features, np.ones((len(features), 1))])
    split = len(x) * 3 // 4
    gram = x[:split].T @ x[:split] + penalty * np.eye(x.shape[1])
    weights = np.linalg.solve(gram, x[:split].T @ targets[:split])
    predicted = (x[split:] @ weights).argmax(axis=1)
    return float((predicted == targets[split:].argmax(axis=1)).mean())


def chance(labels: Sequence[str]) -> float:
    """Accuracy of always answering the most common label of the held-out quarter."""
    held_out = list(labels[len(labels) * 3 // 4 :])
    return max(held_out.count(label) for label in set(held_out)) / len(held_out)


def scenes(count: int, seed: int) -> list[tuple[np.ndarray, list[synthetic.SynthObject], list[str]]]:
    """Generated images with their objects and every expression that picks one of them out."""
    rng = np.random.default_rng(seed)
    height, width = 96, 128  # the generator's default image size
    made = []
    for _ in range(count):
        objects = synthetic.layout(rng, height, width, 1.0)
        image = np.array(Image.open(io.BytesIO(synthetic.render(objects, height, width, rng))).convert("RGB"))
        margin = synthetic.POSITION_MARGIN * min(height, width)
        sentences = [s for i in range(len(objects)) for s in synthetic.describe(i, objects, margin, rng)]
        made.append((image, objects, sentences))
    return made


@torch.inference_mode()
def features(predictor: Predictor, count: int, seed: int) -> tuple[np.ndarray, list[str], np.ndarray, list]:
    """(prompt vectors, their expressions, centre-cell image features, their objects)."""
    model, patch = predictor.model, predictor.config.image_backbone.patch_size
    prompts, texts, cells, objects = [], [], [], []
    for image, scene_objects, sentences in scenes(count, seed):
        sam_pixels, (resized_height, resized_width) = predictor.sam_preprocess(image)
        embedding = model.encode_image(sam_pixels[None]).embedding[0]
        side = embedding.shape[-1]
        to_cell_x, to_cell_y = resized_width / image.shape[1] / patch, resized_height / image.shape[0] / patch
        for obj in scene_objects:
            row, column = min(int(obj.y * to_cell_y), side - 1), min(int(obj.x * to_cell_x), side - 1)
            cells.append(embedding[:, row, column].numpy())
            objects.append(obj)
        input_ids, attention_mask = pad_token_ids(predictor.tokenize(sentences), predictor.tokenizer.pad_token_id)
        beit = predictor.beit_preprocess(image)[None].expand(len(sentences), -1, -1, -1)
        prompts.append(model.encode_prompts(beit, input_ids, attention_mask)[:, 0].numpy())
        texts += sentences
    return np.concatenate(prompts), texts, np.stack(cells), objects


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "checkpoint", type=Path, help="a checkpoint of evf fit on the tiny model, or an exported folder"
    )
    parser.add_argument("--tokenizer", type=Path, default=None, help="the tokenizer folder a checkpoint needs")
    parser.add_argument("--images", type=int, default=300, help="generated scenes to probe")
    parser.add_argument("--seed", type=int, default=5, help="seed of the generated scenes (not the training data's 0)")
    args = parser.parse_args()
    predictor = load_predictor(args.checkpoint, tokenizer=args.tokenizer, device="cpu")
    prompts, texts, cells, objects = features(predictor, args.images, args.seed)
    print(f"{args.checkpoint}: {len(texts)} expressions, {len(objects)} objects in {args.images} scenes")
    print(f"{'probe':<24}{'samples':>8}{'accuracy':>10}{'chance':>8}")
    for cue, words in (("shape", synthetic.SHAPES), ("colour", tuple(synthetic.COLOURS))):
        named = [(i, w) for i, text in enumerate(texts) for w in words if w in text.split()]
        labels = [w for _, w in named]
        accuracy = ridge_accuracy(prompts[[i for i, _ in named]], labels)
        print(f"{'prompt -> ' + cue + ' word':<24}{len(named):>8}{accuracy:>10.3f}{chance(labels):>8.3f}")
        labels = [obj.cue(cue) for obj in objects]
        accuracy = ridge_accuracy(cells, labels)
        print(f"{'image centre -> ' + cue:<24}{len(labels):>8}{accuracy:>10.3f}{chance(labels):>8.3f}")


if __name__ == "__main__":
    main()
