"""Every shipped grid explains itself and every one of its cells parses into a valid config (no run)."""

from pathlib import Path

import pytest

from evf_lightning.commands.grid import load_grid, validate_cell

GRIDS = sorted((Path(__file__).resolve().parents[2] / "experiments").glob("*.yaml"))


def test_the_paper_grids_are_shipped():
    names = {path.stem for path in GRIDS}
    assert {
        "toy_encoders",
        "toy_table4",
        "table4_encoder_fusion",
        "table5_backbone",
        "table6_trainable",
        "table12_prompt_token",
    } <= names


@pytest.mark.parametrize("path", GRIDS, ids=lambda p: p.stem)
def test_grid_header_and_every_cell_are_valid(path):
    header = path.read_text().split("\n\n")[0]
    for word in ("Reproduces:", "Needs:", "Run:"):
        assert word in header, f"{path.name} header lacks {word!r}"
    grid = load_grid(path)
    assert len(grid.cells) >= 4
    for cell in grid.cells:
        validate_cell(grid, cell)
