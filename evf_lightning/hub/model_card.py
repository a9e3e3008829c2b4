"""The README.md model card of an exported folder: what the model is, what it learned from, how well, how to load it.

Rendering only: the caller gathers the facts (config, data, the MLflow run's metrics) into a `ModelCardFacts`, so
the card is the same text for the same facts and a test can read its numbers back. The YAML front matter is the
Hugging Face Hub's model-card metadata, so a folder pushed to the Hub is described there as well.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

CARD_FILE = "README.md"
LICENSE = "apache-2.0"
LIBRARY_NAME = "evf-lightning"
TAGS = ("evf-sam", "referring-segmentation", "segment-anything", "beit-3")
METRICS_HEADER = "| metric | value |"


@dataclass(frozen=True)
class ModelCardFacts:
    """Everything a card says.

    `metrics` is None when the MLflow run could not be read; `metrics_source` then says why, else where they
    were read. `sam_scale` and `beit_scale` are the official preset names, None when the sizes are no published
    preset (the official code cannot build the model then). `data` is the run's data config (train/val/test
    lists of sources), `config` the key parts of the resolved config (model, optimizer, ...).
    """

    title: str
    family: str
    variant: str
    official_model_type: str
    sam_scale: str | None
    beit_scale: str | None
    parameters: int
    data: Mapping[str, Any]
    config: Mapping[str, Any]
    metrics: Mapping[str, float] | None
    metrics_source: str
    run_id: str | None = None
    base_model: str | None = None


def render_model_card(facts: ModelCardFacts) -> str:
    """The card as Markdown with Hugging Face YAML front matter."""
    sections = [
        _front_matter(facts),
        f"# {facts.title}\n",
        _variant(facts),
        _data(facts.data),
        _metrics(facts),
        _config(facts.config),
        _intended_use(),
        _loading(facts),
    ]
    return "\n".join(sections)


def _front_matter(facts: ModelCardFacts) -> str:
    meta: dict[str, Any] = {
        "license": LICENSE,
        "library_name": LIBRARY_NAME,
        "pipeline_tag": "image-segmentation",
        "tags": [*TAGS, f"backbone-{facts.family}"],
    }
    if facts.base_model:
        meta["base_model"] = facts.base_model
    return f"---\n{yaml.safe_dump(meta, sort_keys=False)}---\n"


def _variant(facts: ModelCardFacts) -> str:
    if facts.sam_scale and facts.beit_scale:
        sizes = f"official presets sam_scale `{facts.sam_scale}`, mm_extractor_scale `{facts.beit_scale}`"
    else:
        sizes = "sizes that are no published preset (see the config below)"
    lines = [
        "## Variant\n",
        f"{facts.variant}: backbone family `{facts.family}`, {sizes}; {facts.parameters:,} parameters.",
        "A BEiT-3 encoder reads the image and the referring expression together (early fusion) and prompts the",
        "mask decoder of a Segment-Anything-family backbone.",
    ]
    if facts.base_model:
        lines.append(f"Fine-tuned from `{facts.base_model}`.")
    return "\n".join(lines) + "\n"


def _data(data: Mapping[str, Any]) -> str:
    lines = ["## Data\n"]
    for stage in ("train", "val", "test"):
        sources = data.get(stage) or []
        if sources:
            lines.append(f"- {stage}: " + "; ".join(_source(source) for source in sources))
    if len(lines) == 1:
        lines.append("The run's data config is not known (the model config was given without a run config).")
    return "\n".join(lines) + "\n"


def _source(source: Any) -> str:
    if isinstance(source, Mapping):
        return ", ".join(f"{key} {value}" for key, value in source.items() if value is not None)
    return str(source)


def _metrics(facts: ModelCardFacts) -> str:
    if facts.metrics is None:
        return f"## Metrics\n\nMetrics are unavailable: {facts.metrics_source}.\n"
    rows = [f"| `{name}` | {value!r} |" for name, value in sorted(facts.metrics.items())]
    run = f" (run `{facts.run_id}`)" if facts.run_id else ""
    head = f"## Metrics\n\nLast logged values of the MLflow run{run}, {facts.metrics_source}:\n"
    return "\n".join([head, METRICS_HEADER, "|---|---|", *rows]) + "\n"


def _config(config: Mapping[str, Any]) -> str:
    # JSON round trip: plain data only (tuples become lists), so safe_dump writes every config alike.
    text = yaml.safe_dump(json.loads(json.dumps(config)), sort_keys=False)
    return f"## Config\n\nThe key parts of the run's resolved config:\n\n```yaml\n{text}```\n"


def _intended_use() -> str:
    return (
        "## Intended use and limits\n\n"
        'Segmenting the object a short English referring expression names ("the zebra on the left") in a '
        "natural image, for research and for building tools on top. One mask per expression; an expression that "
        "names nothing in the image still gets a mask. The model is as good as the data above: expect it to fail "
        "on domains, words and object kinds those datasets lack, and check the metrics before relying on it. "
        "Not for decisions about people.\n"
    )


def _loading(facts: ModelCardFacts) -> str:
    lines = [
        "## How to load it\n",
        "With evf-lightning (DIR: this folder):\n",
        "```bash",
        'evf predict-image --model DIR --image photo.jpg --prompt "the zebra on the left"',
        "```\n",
        "```python",
        "from pathlib import Path",
        "",
        "from evf_lightning.serve.predictor import load_predictor",
        "from evf_lightning.serve.images import read_image",
        "",
        f'predictor = load_predictor("DIR", family="{facts.family}")',
        'masks = predictor.predict(read_image(Path("photo.jpg")), ["the zebra on the left"])  # bool [P, H, W]',
        "```\n",
    ]
    if facts.sam_scale and facts.beit_scale:
        lines += [
            "With the official EVF-SAM code (github.com/hustvl/EVF-SAM), from its repository:\n",
            "```bash",
            f"python inference.py --version DIR --model_type {facts.official_model_type} "
            '--image_path photo.jpg --prompt "the zebra on the left"',
            "```",
        ]
    else:
        lines.append(
            "The official EVF-SAM code cannot build this model: it builds only the published sizes, and these "
            "are none of them. evf-lightning reads the folder (`evf import`, `model.init.evf`)."
        )
    return "\n".join(lines) + "\n"
