"""Every training recipe parses with the real TrlParser (unknown keys fail) and every accelerate config loads."""

import re
from pathlib import Path

import pytest
import torch
import yaml
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DistributedType

from core.cli import is_user_error, run_command
from core.preflight import Preflight
from tests.conftest import REPO_ROOT
from train import plan
from train.batch import BatchPlanError, gradient_accumulation
from train.preflight import check_batch
from train.recipes import dpo_parser, sft_parser

TRAIN_CONFIGS = REPO_ROOT / "configs" / "train"
ACCELERATE_CONFIGS = REPO_ROOT / "accelerate_configs"
REAL_MODELS = {"qwen3-8b": "Qwen/Qwen3-8B", "deepseek-r1-distill-qwen-7b": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"}
REAL_RECIPES = ["sft_lora", "sft_qlora", "dpo_lora", "dpo_qlora"]
# Knobs whose value needs a reason: each must carry a comment on its line in the real recipes.
DEFENDED = [
    "lora_r",
    "lora_alpha",
    "lora_target_modules",
    "learning_rate",
    "max_length",
    "global_batch_size",
    "per_device_train_batch_size",
    "logging_steps",
    "eval_steps",
    "save_steps",
]


def plan_main(argv: list[str]) -> int:
    """``python -m train.plan ARGV`` in this process: exit code returned, user errors as one line on stderr."""
    return run_command(plan.main, plan.COMMAND, plan.make_parser, argv)


def parse(path: Path):
    parser = sft_parser() if path.name.startswith("sft") else dpo_parser()
    args = ["--config", str(path)]
    if not torch.cuda.is_available() and yaml.safe_load(path.read_text()).get("bf16"):
        args += ["--bf16", "false"]  # GPU recipes: transformers refuses bf16 without a GPU; every key is still checked
    return parser.parse_args_and_config(args)


def all_recipes() -> list[Path]:
    return sorted(TRAIN_CONFIGS.glob("*/*.yaml"))


def is_paper(path: Path) -> bool:
    """The paper's training setup (sft_lora_paper.yaml): its own values, checked in tests/test_paper_training.py
    (dpo_lora_paper.yaml is the project's DPO recipe on its adapter: the project's values hold)."""
    return path.stem == "sft_lora_paper"


def test_recipe_set_is_complete():
    present = {(p.parent.name, p.stem) for p in all_recipes()}
    for model in REAL_MODELS:
        for recipe in REAL_RECIPES:
            assert (model, recipe) in present
    for model in ["tiny-qwen3", "tiny-qwen2"]:
        assert {(model, "sft_lora"), (model, "dpo_lora")} <= present


@pytest.mark.parametrize("path", all_recipes(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recipe_parses_with_real_parser(path: Path):
    script_args, training_args, model_args = parse(path)
    assert script_args.dataset_name.endswith("/sft" if path.stem.startswith("sft") else "/dpo")
    assert training_args.output_dir.endswith(f"{path.parent.name}/{path.stem}")
    if model_args.use_peft:  # DPO recipes inherit the target modules from the SFT adapter's config
        assert model_args.lora_target_modules == "all-linear"
    assert "wandb" in training_args.report_to
    if path.stem.startswith("sft"):
        assert model_args.use_peft and training_args.assistant_only_loss
        assert training_args.packing != is_paper(path)  # the paper recipe counts conversations: packing off
    else:
        # DPO continues the SFT adapter of the same model and quantisation: its output_dir is our sft_adapter.
        sft_path = path.with_name(path.stem.replace("dpo", "sft") + ".yaml")
        if not sft_path.exists():
            sft_path = path.with_name("sft_lora.yaml")
        assert script_args.sft_adapter == parse(sft_path)[1].output_dir
        assert not model_args.use_peft  # the adapter comes from sft_adapter; TRL rejects a second peft_config
        assert training_args.beta > 0 and training_args.loss_type
    assert model_args.load_in_4bit == ("qlora" in path.stem)
    if "qwen3" in path.parent.name:
        assert script_args.enable_thinking is False
    if path.parent.name in REAL_MODELS and not is_paper(path):
        assert model_args.model_name_or_path == REAL_MODELS[path.parent.name]
        lines = path.read_text().splitlines()
        if path.stem.startswith("dpo"):  # the LoRA shape comes from the SFT adapter, so DPO recipes do not set it
            keys = [key for key in DEFENDED if not key.startswith("lora_")] + ["beta", "loss_type"]
        else:
            keys = DEFENDED
        for key in keys:
            line = next((line for line in lines if line.startswith(f"{key}:")), None)
            assert line is not None and "#" in line, f"{path}: '{key}' is not set with a one-line reason"
        assert training_args.learning_rate == (2e-4 if path.stem.startswith("sft") else 5e-6)


# Issue 11's floors for a 1,500-row CULTURAX: at least 50 SFT / 30 DPO optimizer steps, 20 logged points, 3 evaluations
# and a checkpoint every 10% of the run, the same on 1, 8 and 16 GPUs (the global batch does not depend on them).
FLOOR_STEPS = {"sft": 50, "dpo": 30}


@pytest.mark.parametrize(
    "path",
    [p for p in all_recipes() if p.parent.name in REAL_MODELS and not is_paper(p)],
    ids=lambda p: f"{p.parent.name}/{p.stem}",
)
def test_real_recipe_plan_floors_on_1_8_16_gpus(path: Path, capsys):
    last_lines = {}
    for gpus in (1, 8, 16):
        assert plan_main(["--config", str(path), "--rows", "1500", "--gpus", str(gpus)]) == 0
        last_lines[gpus] = capsys.readouterr().out.strip().splitlines()[-1]
    pattern = (
        r"plan: global_batch=(\d+) grad_accum=(\d+) optimizer_steps=(\d+) logged=(\d+) evals=(\d+) checkpoints=(\d+)"
    )
    parsed = {gpus: [int(v) for v in re.fullmatch(pattern, line).groups()] for gpus, line in last_lines.items()}
    batch, _, steps, logged, evals, checkpoints = parsed[1]
    for gpus, (g_batch, g_accum, g_steps, g_logged, g_evals, g_checkpoints) in parsed.items():
        assert (g_batch, g_steps, g_logged, g_evals, g_checkpoints) == (batch, steps, logged, evals, checkpoints)
        per_device = 1 if path.stem.startswith("sft") else 2
        assert g_accum * per_device * gpus == batch  # accumulation derived from the world size
    assert steps >= FLOOR_STEPS[path.stem[:3]] and logged >= 20 and evals >= 3
    assert checkpoints >= 10  # every 10% of the run (ceil(steps / 10) apart) plus the final step


def test_global_batch_that_does_not_split_is_refused(tmp_path, capsys):
    assert gradient_accumulation(32, 2, 8) == 2
    with pytest.raises(BatchPlanError, match="global_batch_size 32 is not a multiple of .* 2 x 12 processes = 24"):
        gradient_accumulation(32, 2, 12)
    path = str(TRAIN_CONFIGS / "qwen3-8b" / "dpo_lora.yaml")
    assert plan_main(["--config", path, "--rows", "1500", "--gpus", "12"]) == 2
    assert "dpo_lora.yaml: recipe: global_batch_size 32" in capsys.readouterr().err
    assert is_user_error(BatchPlanError("x"))  # one line at launch too, not a traceback


def test_preflight_checks_the_global_batch_splits_over_this_launch():
    """--check (and the start of a real run) refuses a global batch this launch's processes cannot split."""
    path = str(TRAIN_CONFIGS / "tiny-qwen3" / "dpo_lora.yaml")  # 2 pairs per device
    expected = {
        "4": "✓ global_batch_size: 4 = per_device 2 x 1 processes here x grad_accum 2",
        "3": "✗ global_batch_size: this launch: global_batch_size 3 is not a multiple of per_device_train_batch_size 2 "
        "x 1 processes = 2",
    }
    for global_batch, line in expected.items():
        script_args, training_args, _ = dpo_parser().parse_args_and_config(
            ["--config", path, "--global_batch_size", global_batch]
        )
        check = Preflight(path)
        check_batch(script_args, training_args, check)
        (item,) = check.items()
        assert item.line().startswith(line)


def test_unknown_key_fails(tmp_path):
    config = yaml.safe_load((TRAIN_CONFIGS / "tiny-qwen3" / "sft_lora.yaml").read_text())
    config["max_seq_length"] = 512  # the pre-TRL-1.x name: must not be silently ignored
    path = tmp_path / "sft_bad.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match="max_seq_length"):
        sft_parser().parse_args_and_config(["--config", str(path)])


def test_cli_overrides_yaml_and_env_block_is_exported(tmp_path, monkeypatch):
    monkeypatch.delenv("ALIGNCULTURA_TEST_ENV", raising=False)
    config = yaml.safe_load((TRAIN_CONFIGS / "tiny-qwen3" / "dpo_lora.yaml").read_text())
    config["env"] = {"ALIGNCULTURA_TEST_ENV": "from-yaml"}
    path = tmp_path / "dpo.yaml"
    path.write_text(yaml.safe_dump(config))
    script_args, training_args, _ = dpo_parser().parse_args_and_config(
        ["--config", str(path), "--beta", "0.25", "--sft_adapter", "elsewhere"]
    )
    assert training_args.beta == 0.25 and script_args.sft_adapter == "elsewhere"
    assert training_args.max_length == config["max_length"]
    import os

    assert os.environ["ALIGNCULTURA_TEST_ENV"] == "from-yaml"


EXPECTED_ACCELERATE = {
    "single_gpu": (DistributedType.NO, 1, 1),
    "multi_gpu": (DistributedType.MULTI_GPU, None, 1),
    "deepspeed_zero2": (DistributedType.DEEPSPEED, None, 1),
    "deepspeed_zero3": (DistributedType.DEEPSPEED, None, 1),
    "fsdp": (DistributedType.FSDP, None, 1),
    "multi_node_multi_gpu": (DistributedType.MULTI_GPU, None, 2),
    "multi_node_deepspeed_zero3": (DistributedType.DEEPSPEED, None, 2),
    "cpu_2proc": (DistributedType.MULTI_GPU, 2, 1),
}


def test_accelerate_configs_load():
    names = {p.stem for p in ACCELERATE_CONFIGS.glob("*.yaml")}
    assert names == set(EXPECTED_ACCELERATE)
    for name, (kind, processes, machines) in EXPECTED_ACCELERATE.items():
        config = load_config_from_file(str(ACCELERATE_CONFIGS / f"{name}.yaml"))
        assert config.distributed_type == kind, name
        assert config.num_machines == machines, name
        if processes:
            assert config.num_processes == processes, name
        assert config.mixed_precision == ("no" if name == "cpu_2proc" else "bf16"), name
    zero3 = load_config_from_file(str(ACCELERATE_CONFIGS / "deepspeed_zero3.yaml")).deepspeed_config
    assert zero3["zero_stage"] == 3 and zero3["zero3_save_16bit_model"] is True  # whole adapters on save
    assert load_config_from_file(str(ACCELERATE_CONFIGS / "deepspeed_zero2.yaml")).deepspeed_config["zero_stage"] == 2
    fsdp = load_config_from_file(str(ACCELERATE_CONFIGS / "fsdp.yaml")).fsdp_config
    assert fsdp["fsdp_state_dict_type"] == "FULL_STATE_DICT"
