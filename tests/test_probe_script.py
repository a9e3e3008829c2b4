"""scripts/probe_tiny_model.py: its ridge probe separates what is separable, and it runs on a real checkpoint."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("probe_tiny_model", REPO / "scripts/probe_tiny_model.py")
probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe)


def test_ridge_probe_reads_a_linear_code_and_not_noise():
    rng = np.random.default_rng(0)
    labels = [str(v) for v in rng.choice(["a", "b", "c"], size=400)]
    code = np.eye(3)[[("a", "b", "c").index(label) for label in labels]] @ rng.normal(size=(3, 16))
    assert probe.ridge_accuracy(code + 0.1 * rng.normal(size=code.shape), labels) > 0.95
    assert probe.ridge_accuracy(rng.normal(size=code.shape), labels) < probe.chance(labels) + 0.15


def test_the_probe_runs_on_a_trained_checkpoint(trained_run, synth_root, capsys, monkeypatch):
    monkeypatch.setattr(
        sys, "argv", ["probe", str(trained_run["ckpt"]), "--tokenizer", str(synth_root / "tokenizer"), "--images", "24"]
    )
    probe.main()
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if "->" in line]
    assert [row[0] + row[row.index("->") + 1] for row in rows] == [
        "promptshape",
        "imageshape",
        "promptcolour",
        "imagecolour",
    ]
    for row in rows:
        accuracy, chance = float(row[-2]), float(row[-1])
        assert 0.0 <= accuracy <= 1.0 and 0.0 < chance <= 1.0
    objects = {int(row[-3]) for row in rows if row[0] == "image"}
    assert len(objects) == 1 and 72 <= objects.pop() <= 96  # 3-4 objects in each of 24 scenes


def test_chance_is_the_share_of_the_commonest_label_in_the_held_out_quarter():
    assert probe.chance(["y"] * 9 + ["x", "x", "y"]) == pytest.approx(2 / 3)  # held out: the last 3
