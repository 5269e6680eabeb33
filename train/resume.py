"""Which checkpoint a (re-)run resumes from, and resuming a DeepSpeed checkpoint on a different number of processes.

DeepSpeed's ZeRO optimizer state is partitioned per data-parallel rank and refuses to load on another world size
("DP world size of 2 but the current world size is 1"), and auto-resume would pick that checkpoint up on every
resubmission. With LoRA that state is small, so a ZeRO-1/2 checkpoint resumes on the new world size from its
module weights (the adapter), the LR scheduler and the step, with a freshly built optimizer state (logged). ZeRO-3
module weights are partitioned too: that case stops with one line saying how to proceed.
"""

import contextlib
import json
import os
import re
from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer_utils import get_last_checkpoint

from core.cli import UserError

TRAIN_RESULTS_FILE = "train_results.json"
ZERO_OPTIM_FILE = re.compile(r"(?:bf16_)?zero_pp_rank_(\d+)_mp_rank_\d+_optim_states\.pt")


class WorldSizeChangedError(UserError):
    """A DeepSpeed checkpoint that cannot be resumed on this world size; the message says how to proceed (the user
    picks the process count or a new output_dir), so it ends the run as one ``COMMAND: error:`` line, exit code 2."""


def last_checkpoint(training_args) -> str | None:
    """An explicit resume_from_checkpoint wins; otherwise the newest checkpoint-N in output_dir (None if fresh)."""
    if training_args.resume_from_checkpoint:
        return training_args.resume_from_checkpoint
    if os.path.isdir(training_args.output_dir):
        return get_last_checkpoint(training_args.output_dir)
    return None


def already_finished(training_args) -> bool:
    """True when output_dir holds a completed run for this step budget: a re-submitted finished job does nothing."""
    if not (Path(training_args.output_dir) / TRAIN_RESULTS_FILE).is_file():
        return False
    checkpoint = last_checkpoint(training_args)
    if checkpoint is None:
        return True
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
    target = training_args.max_steps if training_args.max_steps > 0 else state["max_steps"]
    return state["global_step"] >= target


def deepspeed_checkpoint_world_size(checkpoint: str) -> tuple[int, bool] | None:
    """(data-parallel world size that saved it, whether its module weights are whole) for a DeepSpeed checkpoint,
    None for any other checkpoint. Module weights are whole (mp_rank_00_model_states.pt) under ZeRO-1/2 and
    partitioned per rank under ZeRO-3."""
    tags = sorted(Path(checkpoint).glob("global_step*"))
    if not tags:
        return None
    ranks = {int(m.group(1)) for f in tags[-1].iterdir() if (m := ZERO_OPTIM_FILE.fullmatch(f.name))}
    if not ranks:
        return None
    return len(ranks), (tags[-1] / "mp_rank_00_model_states.pt").is_file()


def _load_module_only(deepspeed_engine, checkpoint_path, load_module_strict=True):
    """transformers' deepspeed_load_checkpoint, without the per-rank ZeRO optimizer state: DeepSpeed then rebuilds
    its fp32 optimizer partitions from the loaded weights (engine.load_checkpoint, load_module_only)."""
    load_path, _ = deepspeed_engine.load_checkpoint(
        checkpoint_path,
        load_module_strict=load_module_strict,
        load_optimizer_states=False,
        load_lr_scheduler_states=False,
        load_module_only=True,
    )
    if load_path is None:
        raise ValueError(f"[deepspeed] failed to load the module weights of {checkpoint_path}")


class SyncLearningRate(TrainerCallback):
    """A rebuilt optimizer starts at the initial learning rate; loading the scheduler's state does not set it. Put the
    restored schedule's current rate into the optimizer before the first resumed step (as loading its state would)."""

    def on_train_begin(self, args, state, control, lr_scheduler=None, **kwargs):
        scheduler = getattr(lr_scheduler, "scheduler", lr_scheduler)  # accelerate may wrap it
        for group, lr in zip(scheduler.optimizer.param_groups, scheduler.get_last_lr(), strict=True):
            group["lr"] = lr


def restore_trained_adapter(model, checkpoint: str) -> bool:
    """Load the trained adapter of a checkpoint that also holds other adapters in subfolders (DPO's frozen "ref" copy
    of the SFT policy). transformers 5.19's Trainer, resuming such a PeftModel, loads only the subfolders and leaves
    the active adapter as built (the SFT copy), so the resumed policy would restart from the reference and every
    reward would be 0. DeepSpeed checkpoints restore the module through DeepSpeed instead. True when loaded here."""
    root = Path(checkpoint)
    others = [d for d in root.iterdir() if d.is_dir() and (d / "adapter_model.safetensors").is_file()]
    if not hasattr(model, "load_adapter") or not (root / "adapter_model.safetensors").is_file() or not others:
        return False
    if deepspeed_checkpoint_world_size(checkpoint) is not None:
        return False
    active = model.active_adapters[0]
    model.load_adapter(str(root), active, is_trainable=True)
    model.set_adapter(active)
    return True


def resume_context(checkpoint: str | None, world_size: int, trainer):
    """The context trainer.train(resume_from_checkpoint=checkpoint) runs in on this world size."""
    saved = deepspeed_checkpoint_world_size(checkpoint) if checkpoint else None
    if saved is None or saved[0] == world_size:
        return contextlib.nullcontext()
    saved_world, whole_module = saved
    if not whole_module:
        raise WorldSizeChangedError(
            f"{checkpoint}: DeepSpeed ZeRO-3 checkpoint saved by {saved_world} processes, this run has {world_size}; "
            f"resume with {saved_world} processes (ZeRO-3 weights are partitioned per process) or start over in a "
            "new output_dir"
        )
    trainer.add_callback(SyncLearningRate())
    trainer.accelerator.print(
        f"world size changed: {checkpoint} was saved by {saved_world} processes, this run has {world_size}; "
        "resuming its adapter weights, LR scheduler and step, with a freshly built optimizer state (DeepSpeed ZeRO "
        "optimizer state is partitioned per process)"
    )
    import transformers.trainer

    return _patched(transformers.trainer, "deepspeed_load_checkpoint", _load_module_only)


@contextlib.contextmanager
def _patched(module, name: str, replacement):
    original = getattr(module, name)
    setattr(module, name, replacement)
    try:
        yield
    finally:
        setattr(module, name, original)
