"""What a training recipe will do on G GPUs: global batch, gradient accumulation, optimizer steps, and how often it
logs, evaluates and saves. A user's check before submitting a job, and what tests assert the recipes' floors with.

    python -m train.plan --config configs/train/qwen3-8b/sft_lora.yaml --rows 1500 --gpus 8

Recipes state ``global_batch_size`` (packed sequences per optimizer step for SFT, preference pairs for DPO) and the
per-device batch; ``gradient_accumulation_steps`` is derived from the world size at launch (``apply_global_batch``),
so 1, 8 or 16 GPUs run the same optimisation. Logging, eval and save intervals given as fractions (< 1) are
resolved against the run's length by the Trainer; this module replays the Trainer's own flow callback over the steps
to count them. The last line printed is ``plan: global_batch=B grad_accum=A optimizer_steps=S logged=L evals=E
checkpoints=C``.
"""

import argparse
import math
import sys
from dataclasses import dataclass

import yaml
from transformers import TrainerCallback

from data_pipeline.cli import Command, UserError, run_command

# A CULTURAX SFT row: an answer of at most 512 generated tokens (configs/data/culturax.yaml) plus its prompt and
# chat markup. Packed SFT counts sequences of max_length tokens, so the plan needs a mean row length.
DEFAULT_TOKENS_PER_ROW = 512


class BatchPlanError(UserError, ValueError):
    """The global batch cannot be split over this world size and per-device batch: a recipe the user fixes, so every
    command reports it in one line (a ValueError for callers that catch bad values)."""


def gradient_accumulation(global_batch: int, per_device: int, world_size: int, source: str = "recipe") -> int:
    """Accumulation steps so that per_device x world_size x steps == global_batch, or a one-line error saying why."""
    per_step = per_device * world_size
    if global_batch < per_step or global_batch % per_step:
        raise BatchPlanError(
            f"{source}: global_batch_size {global_batch} is not a multiple of per_device_train_batch_size "
            f"{per_device} x {world_size} processes = {per_step}; choose a global batch divisible by it or lower "
            "per_device_train_batch_size"
        )
    return global_batch // per_step


def apply_global_batch(script_args, training_args, world_size: int, source: str = "recipe") -> str:
    """Set training_args.gradient_accumulation_steps from the recipe's global batch for this world size (a recipe
    without ``global_batch_size`` keeps its accumulation); returns the line that logs the derived numbers."""
    per_device = training_args.per_device_train_batch_size
    if script_args.global_batch_size is not None:
        training_args.gradient_accumulation_steps = gradient_accumulation(
            script_args.global_batch_size, per_device, world_size, source
        )
    accumulation = training_args.gradient_accumulation_steps
    return (
        f"batch: global_batch={per_device * world_size * accumulation} = per_device {per_device} x processes "
        f"{world_size} x grad_accum {accumulation}"
    )


class ScheduleReport(TrainerCallback):
    """Prints the run's resolved schedule when training starts (fractions of the run turned into steps)."""

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            evals = f"eval every {state.eval_steps} steps" if args.eval_strategy == "steps" else "no step evals"
            print(
                f"schedule: optimizer_steps={state.max_steps} log every {state.logging_steps} steps, {evals}, "
                f"save every {state.save_steps} steps",
                flush=True,
            )


@dataclass
class Plan:
    sequences: int  # what one epoch iterates over: packed sequences (SFT with packing), rows or pairs
    global_batch: int
    grad_accum: int
    optimizer_steps: int
    logged: int
    evals: int
    checkpoints: int

    def last_line(self) -> str:
        return (
            f"plan: global_batch={self.global_batch} grad_accum={self.grad_accum} "
            f"optimizer_steps={self.optimizer_steps} logged={self.logged} evals={self.evals} "
            f"checkpoints={self.checkpoints}"
        )


def epoch_sequences(training_args, rows: int, tokens_per_row: int) -> int:
    """Sequences per epoch: packing bins rows into max_length-token sequences (best-fit: about total / max_length)."""
    if getattr(training_args, "packing", False):
        return max(1, math.ceil(rows * tokens_per_row / training_args.max_length))
    return rows


def optimizer_steps(training_args, sequences: int, world_size: int) -> int:
    """The Trainer's own arithmetic (Trainer.set_initial_training_values): per-process batches, then updates."""
    if training_args.max_steps > 0:
        return training_args.max_steps
    batches = math.ceil(sequences / (training_args.per_device_train_batch_size * world_size))
    accumulation = training_args.gradient_accumulation_steps
    per_epoch = max(batches // accumulation + int(batches % accumulation > 0), 1)
    return math.ceil(training_args.num_train_epochs * per_epoch)


def count_events(training_args, steps: int) -> tuple[int, int, int]:
    """(log, eval, save) events over ``steps`` optimizer steps, replaying transformers' DefaultFlowCallback."""
    from transformers import TrainerControl, TrainerState
    from transformers.trainer_callback import DefaultFlowCallback

    state, flow = TrainerState(), DefaultFlowCallback()
    state.max_steps = steps
    state.compute_steps(training_args, steps)
    logged = evals = saves = 0
    for step in range(1, steps + 1):
        state.global_step = step
        control = flow.on_step_end(training_args, state, TrainerControl())
        logged, evals, saves = logged + control.should_log, evals + control.should_evaluate, saves + control.should_save
    return logged, evals, saves


def plan(
    script_args,
    training_args,
    rows: int,
    gpus: int,
    tokens_per_row: int = DEFAULT_TOKENS_PER_ROW,
    source: str = "recipe",
) -> Plan:
    apply_global_batch(script_args, training_args, gpus, source)
    sequences = epoch_sequences(training_args, rows, tokens_per_row)
    steps = optimizer_steps(training_args, sequences, gpus)
    logged, evals, saves = count_events(training_args, steps)
    global_batch = training_args.per_device_train_batch_size * gpus * training_args.gradient_accumulation_steps
    return Plan(sequences, global_batch, training_args.gradient_accumulation_steps, steps, logged, evals, saves)


def parse_recipe(path: str):
    """The recipe parsed by its entry point's TrlParser (unknown keys fail), as its preflight parses it: bf16 off
    where no GPU is present (transformers refuses it there); it changes nothing the plan counts."""
    from train.dpo import make_parser as dpo_parser
    from train.preflight import parse_for_check
    from train.sft import make_parser as sft_parser

    with open(path, encoding="utf-8") as handle:  # from the file, so a YAML error names it
        config = yaml.safe_load(handle) or {}
    make_parser = dpo_parser if "beta" in config or "sft_adapter" in config else sft_parser
    script_args, training_args, _ = parse_for_check(make_parser, ["--config", path])
    return script_args, training_args


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
    print(
        f"schedule: {result.optimizer_steps} optimizer steps ({training_args.num_train_epochs:g} epochs); "
        f"log every {training_args.logging_steps:g}, eval every {training_args.eval_steps}, save every "
        f"{training_args.save_steps:g} (fractions of the run when < 1)"
    )
    print(result.last_line())
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, COMMAND, make_parser))
