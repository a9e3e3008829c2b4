# Set-up and the two commands the README starts with. Everything installs into .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= data/synth

.PHONY: venv quickstart test lint clean

$(STAMP): pyproject.toml scripts/install_torch.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python scripts/install_torch.py
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

quickstart: venv
	$(BIN)/evf data synth $(DATA)
	$(BIN)/evf fit --config configs/experiments/quickstart.yaml
	$(BIN)/evf grounding --experiment configs/experiments/quickstart.yaml --by_cue true --output runs/quickstart/grounding.json

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs mlflow.db mlruns data
