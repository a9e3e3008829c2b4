# Set-up and the two commands the README starts with. Everything installs into .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= data/synth
# pip installs with --no-compile: byte-compiling all ~19k installed modules up front took 80 of the 185 s a
# fresh install cost on 2 cores, while a run imports about 2k of them. Those are compiled on their first
# import and cached, which needs bytecode writing on even where the environment turns it off.
export PYTHONDONTWRITEBYTECODE :=
PIP_INSTALL := $(BIN)/python -m pip install --quiet --no-compile

.PHONY: venv quickstart test lint clean

$(STAMP): pyproject.toml scripts/install_torch.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip
	$(BIN)/python scripts/install_torch.py --no-compile
	$(PIP_INSTALL) -e '.[dev]'
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
