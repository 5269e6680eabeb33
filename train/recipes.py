"""The training recipes' schema: one YAML per run parsed by TRL's ``TrlParser`` into the script arguments here and
TRL's ``SFTConfig`` / ``DPOConfig`` and ``ModelConfig`` (unknown keys fail; CLI flags override). The entry points
(train.sft, train.dpo), their preflight, train.plan and the SLURM chain's preflight all parse recipes here.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import yaml
from trl import DPOConfig, ModelConfig, SFTConfig, TrlParser

from core.cli import config_errors, config_path
from core.preflight import Preflight


@dataclass
class TrainScriptArguments:
    """Script-level knobs shared by SFT and DPO (the TRL/transformers configs hold the rest)."""

    dataset_name: str = field(metadata={"help": "a DatasetDict saved by the data pipeline: <out>/sft or <out>/dpo"})
    dataset_train_split: str = "train"
    dataset_test_split: str = "validation"
    global_batch_size: int | None = field(
        default=None,
        metadata={
            "help": "sequences (SFT; packed sequences with packing) or preference pairs (DPO) per optimizer step; "
            "gradient_accumulation_steps is derived from it and the world size at launch (python -m train.plan)"
        },
    )
    early_stopping_patience: int | None = field(
        default=None,
        metadata={
            "help": "stop when metric_for_best_model has not improved for this many evaluations in a row "
            "(transformers' EarlyStoppingCallback; needs load_best_model_at_end, so the best checkpoint is saved)"
        },
    )
    allow_unguarded_dataset: bool = field(
        default=False,
        metadata={"help": "train even if <dataset>/../manifest.json is missing or reports cross-split leakage"},
    )
    enable_thinking: bool = field(
        default=False, metadata={"help": "Qwen3 templates: render turns with thinking on (off by default)"}
    )
    keep_reasoning: bool = field(
        default=False,
        metadata={
            "help": "'reason, then answer' tuning: put the data's reasoning traces (views' reasoning columns, from "
            "generate.keep_reasoning) in the think block; off: 'answer directly' (empty think block / thinking off)"
        },
    )
    wandb_project: str | None = field(default=None, metadata={"help": "default: $WANDB_PROJECT or 'aligncultura'"})
    wandb_entity: str | None = field(default=None, metadata={"help": "default: $WANDB_ENTITY"})
    wandb_group: str | None = field(default=None, metadata={"help": "the experiment; default: $WANDB_RUN_GROUP"})


@dataclass
class DPOScriptArguments(TrainScriptArguments):
    sft_adapter: str | None = field(
        default=None, metadata={"help": "SFT LoRA adapter dir to continue (on model_name_or_path as the base)"}
    )


def sft_parser() -> TrlParser:
    return TrlParser((TrainScriptArguments, SFTConfig, ModelConfig))


def dpo_parser() -> TrlParser:
    return TrlParser((DPOScriptArguments, DPOConfig, ModelConfig))


def parse_for_check(make_parser: Callable, argv: list[str], check: Preflight | None = None):
    """Parse a training command line for a check. A machine without a GPU (a login node) parses a bf16 recipe with
    bf16 off, since transformers refuses bf16 without one; the real run on the GPU node keeps it."""
    config = config_path(argv)
    argv = list(argv)
    values = {}
    if config:
        with config_errors(config), open(config, encoding="utf-8") as handle:  # a YAML error names the file
            values = yaml.safe_load(handle) or {}
    if not torch.cuda.is_available() and isinstance(values, dict) and values.get("bf16") and "--bf16" not in argv:
        argv += ["--bf16", "false"]
        if check is not None:
            check.add("info", "bf16", "no GPU here: checked with bf16 off (the GPU job trains in bf16)")
    with config_errors(config):
        return make_parser().parse_args_and_config(argv)


def parse_recipe(path: str):
    """The recipe parsed by its entry point's TrlParser (unknown keys fail), as its preflight parses it: bf16 off
    where no GPU is present (transformers refuses it there); it changes nothing the plan counts."""
    with open(path, encoding="utf-8") as handle:  # from the file, so a YAML error names it
        config = yaml.safe_load(handle) or {}
    make_parser = dpo_parser if "beta" in config or "sft_adapter" in config else sft_parser
    script_args, training_args, _ = parse_for_check(make_parser, ["--config", path])
    return script_args, training_args
