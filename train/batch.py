"""Batch and schedule arithmetic of a training run: the global batch split over the world size, and the Trainer's own
step, log, eval and save counts. A leaf: it imports no other training module (train.plan prints it, train.sft and
train.dpo apply it at launch, the preflight checks it).

Recipes state ``global_batch_size`` (packed sequences per optimizer step for SFT, preference pairs for DPO) and the
per-device batch; ``gradient_accumulation_steps`` is derived from the world size at launch (``apply_global_batch``),
so 1, 8 or 16 GPUs run the same optimisation. Logging, eval and save intervals given as fractions (< 1) are
resolved against the run's length by the Trainer; ``count_events`` replays the Trainer's own flow callback.
"""

import math
from dataclasses import dataclass

from transformers import TrainerCallback

from core.cli import UserError

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


def steps_per_epoch(training_args, sequences: int, world_size: int) -> int:
    """The Trainer's own arithmetic (Trainer.set_initial_training_values): per-process batches, then updates."""
    batches = math.ceil(sequences / (training_args.per_device_train_batch_size * world_size))
    accumulation = training_args.gradient_accumulation_steps
    return max(batches // accumulation + int(batches % accumulation > 0), 1)


def optimizer_steps(training_args, sequences: int, world_size: int) -> int:
    if training_args.max_steps > 0:
        return training_args.max_steps
    return math.ceil(training_args.num_train_epochs * steps_per_epoch(training_args, sequences, world_size))


def count_events(training_args, steps: int, per_epoch: int | None = None) -> tuple[int, int, int]:
    """(log, eval, save) events over ``steps`` optimizer steps, replaying transformers' DefaultFlowCallback: after
    every step, and at the end of every epoch of ``per_epoch`` steps (epoch strategies), each handled on its own."""
    from transformers import TrainerControl, TrainerState
    from transformers.trainer_callback import DefaultFlowCallback

    state, flow = TrainerState(), DefaultFlowCallback()
    state.max_steps = steps
    state.compute_steps(training_args, steps)
    logged = evals = saves = 0
    for step in range(1, steps + 1):
        state.global_step = step
        controls = [flow.on_step_end(training_args, state, TrainerControl())]
        if per_epoch and (step % per_epoch == 0 or step == steps):
            state.epoch = math.ceil(step / per_epoch)
            controls.append(flow.on_epoch_end(training_args, state, TrainerControl()))
        for control in controls:
            logged += control.should_log
            evals += control.should_evaluate
            saves += control.should_save
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
    per_epoch = steps_per_epoch(training_args, sequences, gpus) if training_args.max_steps <= 0 else None
    logged, evals, saves = count_events(training_args, steps, per_epoch)
    global_batch = training_args.per_device_train_batch_size * gpus * training_args.gradient_accumulation_steps
    return Plan(sequences, global_batch, training_args.gradient_accumulation_steps, steps, logged, evals, saves)
