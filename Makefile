# Two commands: `make demo` (the main job on the embedded default) and `make test`.
# Both create .venv and install requirements.txt when missing (or when requirements.txt changed).
VENV ?= .venv
PYTHON := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export WANDB_MODE ?= offline
export TOKENIZERS_PARALLELISM := false

.PHONY: setup test lint format demo clean

$(VENV)/.installed: requirements.txt
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --disable-pip-version-check -q -r requirements.txt
	touch $@

setup: $(VENV)/.installed

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint
	OMP_NUM_THREADS=1 $(PYTHON) -m pytest $(PYTEST_ARGS)

demo: setup
	$(PYTHON) -m data_pipeline --config configs/data/demo.yaml

clean:
	rm -rf runs/demo
