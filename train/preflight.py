"""Training's preflight items and the command-line flow train.sft and train.dpo share.

``python -m train.sft --config configs/train/qwen3-8b/sft_lora.yaml --check`` (or under ``accelerate launch``): the
dataset folder and its manifest (no cross-split leakage), the splits training reads, the base model, the SFT adapter
DPO continues, bitsandbytes for QLoRA, DeepSpeed where configured, the output folder and W&B. A real run starts with
the same checks (core/preflight.py has the shared items and the output format).
"""

import json
from collections.abc import Callable
from pathlib import Path

from core.cli import Command, config_errors, config_path, one_line, pop_flag, use_output_dir_for_wandb
from core.preflight import Preflight
from train.batch import BatchPlanError, gradient_accumulation
from train.data import check_manifest
from train.recipes import parse_for_check


def check_training(script_args, training_args, model_args, check: Preflight) -> Preflight:
    dataset = script_args.dataset_name
    if check.path("dataset_name", dataset, contains="dataset_dict.json"):
        splits = json.loads((Path(dataset) / "dataset_dict.json").read_text()).get("splits", [])
        wanted = [script_args.dataset_train_split]
        if training_args.eval_strategy != "no":
            wanted.append(script_args.dataset_test_split)
        missing = [split for split in wanted if split not in splits]
        if missing:
            check.add("fail", "dataset_name", f"{dataset}: no split {missing} (it has {splits})")
        else:
            check.add("ok", "dataset splits", f"{', '.join(wanted)} present in {dataset}")
        problem = check_manifest(Path(dataset))[0]
        if problem is None:
            check.add("ok", "data manifest", "present, no cross-split leakage, splits match its sha256")
        elif script_args.allow_unguarded_dataset:
            check.add("info", "data manifest", f"{problem} (allowed: allow_unguarded_dataset)")
        else:
            check.add("fail", "data manifest", f"{problem} (training refuses it; allow_unguarded_dataset overrides)")
    check_batch(script_args, training_args, check)
    check_early_stopping(script_args, training_args, check)
    check.model("model_name_or_path", model_args.model_name_or_path)
    if getattr(script_args, "sft_adapter", None):
        check.path("sft_adapter", script_args.sft_adapter, contains="adapter_config.json")
    if model_args.load_in_4bit or model_args.load_in_8bit:
        check.importable("load_in_4bit" if model_args.load_in_4bit else "load_in_8bit", "bitsandbytes", "QLoRA")
    if isinstance(training_args.deepspeed, str):
        check.path("deepspeed", training_args.deepspeed)
    if training_args.deepspeed:
        check.importable("deepspeed", "deepspeed", "a DeepSpeed config")
    if isinstance(training_args.resume_from_checkpoint, str):
        check.path("resume_from_checkpoint", training_args.resume_from_checkpoint, kind="dir")
    check.writable("output_dir", training_args.output_dir)
    check.wandb("report_to", training_args.report_to)
    return check


def check_batch(script_args, training_args, check: Preflight) -> None:
    """The global batch splits over the processes of this launch, as the run will split it (train.plan)."""
    if script_args.global_batch_size is None:
        return
    from accelerate import PartialState

    world_size, per_device = PartialState().num_processes, training_args.per_device_train_batch_size
    try:
        accumulation = gradient_accumulation(script_args.global_batch_size, per_device, world_size, "this launch")
    except BatchPlanError as error:
        check.add("fail", "global_batch_size", one_line(error))
        return
    check.add(
        "ok",
        "global_batch_size",
        f"{script_args.global_batch_size} = per_device {per_device} x {world_size} processes here x grad_accum "
        f"{accumulation}",
    )


def check_early_stopping(script_args, training_args, check: Preflight) -> None:
    """What transformers' EarlyStoppingCallback asserts only once training starts: evaluations to compare, a metric,
    and the best checkpoint kept (load_best_model_at_end, which needs saves at the evaluations)."""
    patience = script_args.early_stopping_patience
    if patience is None:
        return
    metric = training_args.metric_for_best_model
    if patience < 1 or training_args.eval_strategy == "no" or not metric or not training_args.load_best_model_at_end:
        check.add("fail", "early_stopping_patience", f"{patience} needs patience >= 1, an eval_strategy, "
                  "metric_for_best_model and load_best_model_at_end: true")  # fmt: skip
        return
    when = "epoch" if training_args.eval_strategy == "epoch" else "evaluation"
    check.add("ok", "early_stopping_patience", f"stop after {patience} {when}(s) without a better {metric}; the best "
              "checkpoint is reloaded and saved")  # fmt: skip


def train_command(make_parser: Callable, main: Callable, argv: list[str]) -> int:
    """``python -m train.<job> ... [--check]``: the preflight alone, or the preflight then the run."""
    check_only = pop_flag(argv, "--check")
    check = Preflight(config_path(argv) or "the command-line config")
    if check_only:
        script_args, training_args, model_args = parse_for_check(make_parser, argv, check)
        print(check_training(script_args, training_args, model_args, check).report())
        return 2 if check.failures() else 0
    with config_errors(config_path(argv)):
        script_args, training_args, model_args = make_parser().parse_args_and_config(argv)
    check_training(script_args, training_args, model_args, check).raise_if_failed()
    use_output_dir_for_wandb(training_args.output_dir)
    return main(script_args, training_args, model_args)


def command(job: str, purpose: str) -> Command:
    return Command(
        name=f"python -m train.{job}",
        purpose=purpose,
        example=f"accelerate launch --config_file accelerate_configs/single_gpu.yaml -m train.{job} "
        f"--config configs/train/qwen3-8b/{job}_lora.yaml [--learning_rate 1e-4] [--check]",
        config_dir="configs/train",
        check=True,
    )
