"""The model card's text for a published preset: the official loading command and the Hub metadata."""

import yaml

from evf_lightning.hub.model_card import ModelCardFacts, render_model_card


def facts(**changes) -> ModelCardFacts:
    base = {
        "title": "evf-sam2-ft",
        "family": "sam2",
        "variant": "EVF-SAM2 (SAM-2 Hiera)",
        "official_model_type": "sam2",
        "sam_scale": "large",
        "beit_scale": "large",
        "parameters": 898_000_000,
        "data": {"train": [{"dataset": "refcoco", "split": "train", "weight": None}]},
        "config": {"model": {"multimask_output": False}, "optimizer": {"lr": 1e-4, "betas": (0.9, 0.95)}},
        "metrics": {"val/ciou": 0.75, "val/giou": 0.5},
        "metrics_source": "read from sqlite:///m.db",
        "run_id": "abc",
        "base_model": "YxZhang/evf-sam2",
    }
    return ModelCardFacts(**{**base, **changes})


def test_a_preset_card_names_the_official_command_and_its_base_model():
    card = render_model_card(facts())
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["base_model"] == "YxZhang/evf-sam2" and "backbone-sam2" in front["tags"]
    assert "official presets sam_scale `large`, mm_extractor_scale `large`; 898,000,000 parameters" in card
    assert "python inference.py --version DIR --model_type sam2 --image_path photo.jpg" in card
    assert "cannot build this model" not in card
    assert "- train: dataset refcoco, split train\n" in card  # unset fields are left out
    assert "| `val/ciou` | 0.75 |" in card and "betas:\n  - 0.9\n  - 0.95" in card


def test_a_card_without_metrics_says_why():
    card = render_model_card(facts(metrics=None, metrics_source="run abc could not be read (down)", data={}))
    assert "Metrics are unavailable: run abc could not be read (down)." in card and "| metric |" not in card
    assert "The run's data config is not known" in card
