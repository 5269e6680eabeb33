"""What a training recipe will do on G GPUs: global batch, gradient accumulation, optimizer steps, and how often it
logs, evaluates and saves. A user's check before submitting a job, and what tests assert the recipes' floors with.

    python -m train.plan --config configs/train/qwen3-8b/sft_lora.yaml --rows 1500 --gpus 8

The arithmetic is train/batch.py's (the functions the runs apply at launch); the recipe is parsed by
train/recipes.py, as its entry point parses it. The last line printed is ``plan: global_batch=B grad_accum=A
optimizer_steps=S logged=L evals=E checkpoints=C``.
"""

import argparse
import sys

from core.cli import Command, UserError, run_command
from train.batch import DEFAULT_TOKENS_PER_ROW, plan
from train.recipes import parse_recipe

COMMAND = Command(
    name="python -m train.plan",
    purpose="What a training recipe does on G GPUs: global batch, accumulation, optimizer steps, logs, evals, saves.",
    example="python -m train.plan --config configs/train/qwen3-8b/sft_lora.yaml --rows 1500 --gpus 8",
)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=COMMAND.name, description=COMMAND.purpose)
    parser.add_argument("--config", required=True, help="a training recipe: configs/train/<model>/<variant>.yaml")
    parser.add_argument("--rows", type=int, required=True, help="training rows (SFT conversations or DPO pairs)")
    parser.add_argument("--gpus", type=int, required=True, help="processes of the run (GPUs over all nodes)")
    parser.add_argument(
        "--tokens-per-row",
        type=int,
        default=DEFAULT_TOKENS_PER_ROW,
        help="mean tokens of an SFT row, for packed recipes (default %(default)s: a CULTURAX answer of <= 512 "
        "generated tokens with its prompt)",
    )
    return parser


def main(argv: list[str]) -> int:
    args = make_parser().parse_args(argv)
    for name in ("rows", "gpus", "tokens_per_row"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')}: must be >= 1, got {getattr(args, name)}")
    script_args, training_args = parse_recipe(args.config)
    result = plan(script_args, training_args, args.rows, args.gpus, args.tokens_per_row, f"{args.config}: recipe")
    unit = "pairs" if hasattr(training_args, "beta") else "sequences"
    if getattr(training_args, "packing", False):
        print(
            f"data: {args.rows} rows x {args.tokens_per_row} tokens packed into {result.sequences} sequences of "
            f"{training_args.max_length} tokens per epoch"
        )
    else:
        print(f"data: {args.rows} {unit} per epoch")
    print(
        f"batch: {result.global_batch} {unit} per optimizer step = per_device "
        f"{training_args.per_device_train_batch_size} x {args.gpus} GPUs x grad_accum {result.grad_accum}"
    )
    evals = "epoch" if training_args.eval_strategy == "epoch" else training_args.eval_steps
    saves = "epoch" if training_args.save_strategy == "epoch" else f"{training_args.save_steps:g}"
    print(
        f"schedule: {result.optimizer_steps} optimizer steps ({training_args.num_train_epochs:g} epochs); "
        f"log every {training_args.logging_steps:g}, eval every {evals}, save every {saves} (fractions of the run "
        "when < 1)"
    )
    if script_args.early_stopping_patience is not None:
        print(
            f"early stopping: at most {result.optimizer_steps} steps; ends after {script_args.early_stopping_patience}"
            f" evaluation(s) without a better {training_args.metric_for_best_model}, then the best checkpoint is saved"
        )
    print(result.last_line())
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, COMMAND, make_parser))
