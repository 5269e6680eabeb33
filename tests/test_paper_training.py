"""The AlignCultura paper's stated training setup (configs/train/<model>/sft_lora_paper.yaml): its values, its plan at
4 GPUs, and early stopping on the validation loss run for real on a tiny model."""

import json
from pathlib import Path

import pytest
import torch
from datasets import Dataset, DatasetDict
from safetensors.torch import load_file

from core.preflight import Preflight
from data_pipeline.outputs import save_datasets
from tests._train_fixtures import PROMPTS, run_module
from tests.conftest import REPO_ROOT
from tests.test_configs_train import REAL_MODELS, parse, plan_main
from train.preflight import check_early_stopping
from train.recipes import sft_parser

TRAIN_CONFIGS = REPO_ROOT / "configs" / "train"
# Every knob the authors state, and the early-stopping keys that carry "3-5 epochs with early stopping".
PAPER_VALUES = {
    "learning_rate": 2e-5,
    "max_length": 1024,
    "packing": False,
    "num_train_epochs": 5,
    "seed": 42,
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "metric_for_best_model": "eval_loss",
    "greater_is_better": False,
    "load_best_model_at_end": True,
}
DEFENDED = ["learning_rate", "max_length", "packing", "global_batch_size", "per_device_train_batch_size"]
DEFENDED += ["num_train_epochs", "eval_strategy", "early_stopping_patience", "load_best_model_at_end", "seed"]


@pytest.mark.parametrize("model", list(REAL_MODELS))
def test_paper_recipe_states_the_authors_setup(model):
    path = TRAIN_CONFIGS / model / "sft_lora_paper.yaml"
    script_args, training_args, model_args = parse(path)
    assert model_args.model_name_or_path == REAL_MODELS[model] and model_args.use_peft
    assert {key: getattr(training_args, key) for key in PAPER_VALUES} == PAPER_VALUES
    assert (script_args.global_batch_size, script_args.early_stopping_patience) == (128, 1)
    assert script_args.dataset_test_split == "validation" and training_args.output_dir == f"runs/{model}/sft_lora_paper"
    lines = path.read_text().splitlines()
    for key in DEFENDED:  # each stated with its reason on its line
        line = next((line for line in lines if line.startswith(f"{key}:")), None)
        assert line is not None and "#" in line, f"{path}: '{key}' is not set with a one-line reason"


@pytest.mark.parametrize("model", list(REAL_MODELS))
def test_paper_dpo_is_the_projects_recipe_on_the_paper_sft_adapter(model):
    """The authors state no DPO setup: dpo_lora_paper.yaml is dpo_lora.yaml but for the adapter it continues and
    where it writes (so the two can never drift apart)."""
    import yaml

    ours = yaml.safe_load((TRAIN_CONFIGS / model / "dpo_lora_paper.yaml").read_text())
    project = yaml.safe_load((TRAIN_CONFIGS / model / "dpo_lora.yaml").read_text())
    assert {k: v for k, v in ours.items() if k not in ("sft_adapter", "output_dir")} == {
        k: v for k, v in project.items() if k not in ("sft_adapter", "output_dir")
    }
    sft_output = parse(TRAIN_CONFIGS / model / "sft_lora_paper.yaml")[1].output_dir
    assert (ours["sft_adapter"], ours["output_dir"]) == (sft_output, f"runs/{model}/dpo_lora_paper")


def test_plan_prints_the_paper_recipe_at_4_gpus(capsys):
    """1,200 training conversations (CULTURAX's 80%): 38 batches of 8 per GPU a epoch -> 10 optimizer steps of 128
    (4 accumulated), 50 over 5 epochs; one evaluation and one checkpoint per epoch; logged every step (2% of 50)."""
    path = str(TRAIN_CONFIGS / "qwen3-8b" / "sft_lora_paper.yaml")
    assert plan_main(["--config", path, "--rows", "1200", "--gpus", "4"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "data: 1200 sequences per epoch",
        "batch: 128 sequences per optimizer step = per_device 8 x 4 GPUs x grad_accum 4",
        "schedule: 50 optimizer steps (5 epochs); log every 0.02, eval every epoch, save every epoch (fractions of the "
        "run when < 1)",
        "early stopping: at most 50 steps; ends after 1 evaluation(s) without a better eval_loss, then the best "
        "checkpoint is saved",
        "plan: global_batch=128 grad_accum=4 optimizer_steps=50 logged=50 evals=5 checkpoints=5",
    ]


def test_preflight_refuses_early_stopping_without_the_best_checkpoint():
    path = str(TRAIN_CONFIGS / "tiny-qwen3" / "sft_lora_paper.yaml")
    for extra, line in (
        ([], "✓ early_stopping_patience: stop after 1 epoch(s) without a better eval_loss"),
        (["--load_best_model_at_end", "false"], "✗ early_stopping_patience: 1 needs patience >= 1, an eval_strategy"),
    ):
        script_args, training_args, _ = sft_parser().parse_args_and_config(["--config", path, *extra])
        check = Preflight(path)
        check_early_stopping(script_args, training_args, check)
        (item,) = check.items()
        assert item.line().startswith(line)


TRAIN_ANSWER = "Festivals and markets bring music, dance and crafts to every village square."
VALIDATION_ANSWER = "Opera houses keep printed newspapers about graphic design for botanical gardens."


def conflicting_splits(out: Path) -> Path:
    """An SFT view whose validation answers contradict the training answers to the same prompts: once the model has
    learnt what the two share (the template, the end of turn), learning the training answer raises the validation
    loss, on purpose."""

    def rows(prompts, answer):
        return [{"id": f"r-{i}", "subdomains": [1], "messages": [{"role": "user", "content": p},
                 {"role": "assistant", "content": answer}]} for i, p in enumerate(prompts)]  # fmt: skip

    splits = DatasetDict(
        train=Dataset.from_list(rows(PROMPTS, TRAIN_ANSWER) * 2),
        validation=Dataset.from_list(rows(PROMPTS[:4], VALIDATION_ANSWER)),
        test=Dataset.from_list(rows(PROMPTS[4:6], VALIDATION_ANSWER)),
    )
    hashes = save_datasets(out, {"sft": splits})
    manifest = {"outputs": hashes, "leakage": {"cross_split_pairs": 0, "cross_split_rate": 0.0}}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out / "sft"


@pytest.mark.slow
def test_early_stopping_ends_before_the_last_epoch_and_saves_the_best_adapter(tiny_models, tmp_path):
    """The tiny paper recipe (5 epochs at most, patience 1 on eval_loss): the run ends at the first epoch whose
    validation loss is not below the best so far, before epoch 5, and the adapter it saves is the best epoch's."""
    out = tmp_path / "run"
    run_module(["-m", "train.sft", "--config", str(TRAIN_CONFIGS / "tiny-qwen3" / "sft_lora_paper.yaml"),
                "--model_name_or_path", str(tiny_models["tiny-qwen3"]), "--report_to", "none",
                "--dataset_name", str(conflicting_splits(tmp_path / "data")), "--output_dir", str(out)])  # fmt: skip
    checkpoints = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    state = json.loads((checkpoints[-1] / "trainer_state.json").read_text())
    losses = [entry["eval_loss"] for entry in state["log_history"] if "eval_loss" in entry]
    worse = next(i for i in range(1, len(losses)) if losses[i] >= min(losses[:i]))  # patience 1: the first miss
    assert len(losses) == worse + 1 < 5, losses  # stopped there, before the last epoch
    steps_per_epoch = 2  # 16 training rows, global batch 8
    assert json.loads((out / "train_results.json").read_text())["global_step"] == len(losses) * steps_per_epoch
    best = min(range(len(losses)), key=losses.__getitem__)
    best_dir = out / f"checkpoint-{(best + 1) * steps_per_epoch}"
    assert state["best_model_checkpoint"].endswith(best_dir.name)
    saved = load_file(out / "adapter_model.safetensors")
    for checkpoint in checkpoints:
        theirs = load_file(checkpoint / "adapter_model.safetensors")
        same = set(theirs) == set(saved) and all(torch.equal(saved[k], theirs[k]) for k in saved)
        assert same == (checkpoint == best_dir), checkpoint.name
