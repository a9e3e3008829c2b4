"""`evf data prepare` and `evf data show` through the `evf` command, on a generated data config."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from evf_lightning.cli import main
from evf_lightning.commands.data_prepare import load_data_config
from evf_lightning.commands.data_show import COLOURS
from evf_lightning.data.prepared import META_FILE, PreparedReader
from evf_lightning.data.synthetic import write_synthetic_dataset
from evf_lightning.data.synthetic_multitask import FORMATS

REPO = Path(__file__).resolve().parents[1]


def write_config(path: Path, synth_root: Path, prepared: dict[str, str] | None = None) -> Path:
    prepared = prepared or {}

    def source(split: str, **extra) -> dict:
        entry = {"dataset": "refcoco", "split_by": "unc", "split": split, **extra}
        name = f"refcoco_unc_{split}"
        return entry | ({"prepared": prepared[name]} if name in prepared else {})

    config = {
        "root": str(synth_root),
        "tokenizer": str(synth_root / "tokenizer"),
        "train": [source("train", ratio=3), source("testA", ratio=1)],
        "val": [source("val")],
        "seed": 3,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def table_rows(output: str) -> dict[str, list[str]]:
    """Source name -> the cells of its row in the printed table."""
    rows = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in re.split(r"[│┃|]", line) if cell.strip()]
        if len(cells) >= 4 and cells[1].startswith("refcoco_"):
            rows[cells[1]] = cells
    return rows


def test_prepare_writes_an_index_per_source_and_show_reads_through_them(synth_root, tmp_path, capsys):
    config = write_config(tmp_path / "data.yaml", synth_root)
    main(["data", "prepare", str(config), "--out", str(tmp_path / "prepared")])
    printed = capsys.readouterr().out
    names = ["refcoco_unc_train", "refcoco_unc_testA", "refcoco_unc_val"]
    for name in names:
        assert (tmp_path / "prepared" / name / META_FILE).is_file()
        assert re.search(rf"{name}: \d+ images, \d+ prompts, \d+ distinct masks -> ", printed)
        assert f"{name}: prepared: {(tmp_path / 'prepared' / name).absolute()}" in printed
    assert "refcoco_unc_train: 96 images" in printed

    indexed = write_config(tmp_path / "indexed.yaml", synth_root, {n: str(tmp_path / "prepared" / n) for n in names})
    module = load_data_config(indexed)
    assert all(isinstance(r, PreparedReader) for r in module.readers(module.train_splits + module.val_splits))
    main(["data", "show", str(indexed), "--draws", "10000", "--grid", str(tmp_path / "grid.png"), "--samples", "6"])
    printed = capsys.readouterr().out
    rows = table_rows(printed)
    assert set(rows) == set(names)
    train, test_a, val = rows["refcoco_unc_train"], rows["refcoco_unc_testA"], rows["refcoco_unc_val"]
    assert train[:5] == ["train", "refcoco_unc_train", "96", str(sum_prompts(module, 0)), "75.0%"]
    assert test_a[:5] == ["train", "refcoco_unc_testA", "8", str(sum_prompts(module, 1)), "25.0%"]
    assert abs(float(train[5].rstrip("%")) - 75.0) < 2.0 and abs(float(test_a[5].rstrip("%")) - 25.0) < 2.0
    assert val[:3] == ["val", "refcoco_unc_val", "24"] and len(val) == 4
    assert "training: a mixture, 10000 draws of epoch 0 (seed 3)\n" in printed

    grid = np.array(Image.open(tmp_path / "grid.png").convert("RGB")).astype(int)
    assert grid.shape[0] > 300 and grid.shape[1] > 600  # two rows of cells, four across
    for colour in COLOURS[:2]:  # the first two prompts' outlines are drawn in their colours
        assert (np.abs(grid - colour.astype(int)).sum(axis=2) < 40).sum() > 50


def sum_prompts(module, which: int) -> int:
    reader = module.readers(module.train_splits)[which]
    return sum(reader.num_expressions(i) for i in range(len(reader)))


def test_an_experiment_config_s_data_section_is_read_inline_or_by_path(synth_root, tmp_path, capsys):
    (tmp_path / "data").mkdir()
    write_config(tmp_path / "data" / "mine.yaml", synth_root)
    by_path = tmp_path / "experiments" / "by_path.yaml"
    by_path.parent.mkdir()
    by_path.write_text(yaml.safe_dump({"seed_everything": 0, "model": {"x": 1}, "data": "../data/mine.yaml"}))
    inline = tmp_path / "experiments" / "inline.yaml"
    data = yaml.safe_load((tmp_path / "data" / "mine.yaml").read_text())
    inline.write_text(yaml.safe_dump({"trainer": {"max_steps": 1}, "data": data}))
    for experiment in (by_path, inline):
        module = load_data_config(experiment)
        assert [s.name for s in module.train_splits] == ["refcoco_unc_train", "refcoco_unc_testA"]
        assert module.seed == 3
    main(["data", "show", str(inline), "--draws", "100"])
    assert "refcoco_unc_testA" in capsys.readouterr().out


def test_a_single_source_config_shows_its_seeded_shuffle(synth_root, tmp_path, capsys):
    config = tmp_path / "one.yaml"
    config.write_text(yaml.safe_dump({"root": str(synth_root), "tokenizer": "unused", "train": [{"split": "train"}]}))
    main(["data", "show", str(config)])
    printed = capsys.readouterr().out
    assert "training: one source, each image once per epoch in a seeded shuffle (96 draws, seed 0)\n" in printed
    assert table_rows(printed)["refcoco_unc_train"][4:] == ["100.0%", "100.0%"]


CONFIGS = sorted((REPO / "configs" / "data").glob("*.yaml")) + sorted((REPO / "configs" / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_repo_config_s_sources_are_valid(path):
    """Parsing alone does not build the sources; this catches a bad kind, argument or ratio before a run."""
    module = load_data_config(path)
    assert module.train_splits and all(s.name for s in module.train_splits + module.val_splits)


def test_show_on_a_generated_multitask_config_counts_every_format_and_realises_its_ratios(tmp_path, capsys):
    root = tmp_path / "synth"
    written = write_synthetic_dataset(root, train_images=6, val_images=2, test_images=1, formats=FORMATS,
                                      format_images=4)  # fmt: skip
    config = yaml.safe_load((REPO / "configs/data/multitask_synthetic.yaml").read_text())
    config |= {"root": str(root), "tokenizer": str(root / "tokenizer")}
    path = tmp_path / "multitask.yaml"
    path.write_text(yaml.safe_dump(config))
    main(["data", "show", str(path), "--draws", "10000", "--grid", str(tmp_path / "grid.png"), "--samples", "8"])
    printed = capsys.readouterr().out
    rows = {}
    for line in printed.splitlines():
        cells = [cell.strip() for cell in re.split(r"[│┃|]", line) if cell.strip()]
        if cells and cells[0] == "train":
            rows[cells[1]] = cells[2:]
    prompts = {f.kind: len(f.prompts) for f in written.formats}
    ratios = {"refcoco_unc_train": 3} | {name: 1 for name in rows if name != "refcoco_unc_train"}
    assert len(rows) == 7 and rows["refcoco_unc_train"][0] == "6"
    for name, (images, count, configured, realised) in rows.items():
        kind = next((k for k in prompts if name.startswith(k)), None)
        if kind is not None:  # every format's images and prompts as its reader gives them
            assert (images, count) == ("4", str(prompts[kind])), name
        share = 100 * ratios[name] / 9
        assert configured == f"{share:.1f}%" and abs(float(realised.rstrip("%")) - share) < 2.0, name
    assert Image.open(tmp_path / "grid.png").size[0] > 600
