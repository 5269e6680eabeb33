"""What train.sft and train.dpo share around the Trainer: skip a finished run, guard the data, derive the batch
split, open (or resume) the W&B run, resume from the newest checkpoint, stop cleanly on preemption, and write
train_results.json. Each piece is a plain function or one TrainerCallback.
"""

import json
import os
import uuid
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

import torch
from accelerate import PartialState
from transformers import EarlyStoppingCallback, TrainerCallback
from transformers.integrations import is_deepspeed_zero3_enabled
from trl import ModelConfig

from train.batch import ScheduleReport, apply_global_batch
from train.data import load_guarded_dataset
from train.preemption import PreemptionCallback, guard_wandb
from train.recipes import TrainScriptArguments
from train.resume import (
    TRAIN_RESULTS_FILE,
    already_finished,
    last_checkpoint,
    restore_trained_adapter,
    resume_context,
)

WANDB_RUN_ID_FILE = "wandb_run_id"


def model_init_kwargs(model_args: ModelConfig, training_args) -> dict:
    """from_pretrained kwargs as trl/scripts/sft.py builds them. On a GPU the weights load straight onto this rank's
    device, so 8 ranks never hold 8 full host copies; not under DeepSpeed ZeRO-3 (zero.Init partitions at load) or
    FSDP (rank 0 loads, the others receive shards). A k-bit model is always pinned to this process's device."""
    kwargs = dict(
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
        attn_implementation=model_args.attn_implementation,
        dtype=model_args.dtype,
    )
    on_gpu = training_args.device.type == "cuda"
    sharded_load = is_deepspeed_zero3_enabled() or os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    if model_args.load_in_4bit or model_args.load_in_8bit or (on_gpu and not sharded_load):
        kwargs["device_map"] = {"": PartialState().local_process_index} if on_gpu else "cpu"
    return {**kwargs, **(training_args.model_init_kwargs or {})}


def init_wandb(
    script_args: TrainScriptArguments,
    training_args,
    job_type: str,
    model_name: str,
    manifest: dict,
    manifest_digest: str,
    resolved_config: dict,
) -> None:
    """Open (or resume) this output_dir's W&B run on the main process before the Trainer's WandbCallback does.

    The run id lives in ``<output_dir>/wandb_run_id`` so a re-run of the same job continues the same W&B run. Only
    names, config dataclasses and the manifest are logged: secrets stay in the environment.
    """
    import wandb

    if "wandb" not in (training_args.report_to or []) or not PartialState().is_main_process:
        return
    id_file = Path(training_args.output_dir) / WANDB_RUN_ID_FILE
    id_file.parent.mkdir(parents=True, exist_ok=True)
    resumed = id_file.exists()
    if not resumed:
        id_file.write_text(uuid.uuid4().hex[:12])
    print(f"W&B run id {id_file.read_text().strip()} ({'resumed' if resumed else 'new'})", flush=True)
    tags = [job_type, Path(model_name.rstrip("/")).name]
    if manifest_digest:
        tags.append(f"data-{manifest_digest[:12]}")
    wandb.init(
        project=script_args.wandb_project or os.environ.get("WANDB_PROJECT") or "aligncultura",
        entity=script_args.wandb_entity or os.environ.get("WANDB_ENTITY"),
        group=script_args.wandb_group or os.environ.get("WANDB_RUN_GROUP"),
        job_type=job_type,
        name=training_args.run_name or f"{job_type}-{Path(training_args.output_dir).name}",
        id=id_file.read_text().strip(),
        resume="allow",
        tags=tags,
        config={**resolved_config, "data_manifest": manifest, "data_manifest_sha256": manifest_digest},
    )


def resolved_config(*configs) -> dict:
    """All parsed dataclasses as one dict; TrainingArguments.to_dict() redacts hub tokens."""
    return {type(c).__name__: c.to_dict() if hasattr(c, "to_dict") else asdict(c) for c in configs}


class TokenCounterCallback(TrainerCallback):
    """Remembers the token counter at the start of this session (it is restored from a checkpoint on resume)."""

    session_start_tokens = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.session_start_tokens = state.num_input_tokens_seen


def write_train_results(trainer, train_output, token_counter: TokenCounterCallback, resumed_from: str | None) -> dict:
    """train_results.json (CONTRACTS.md "Training outputs"): throughput figures of this session for eval."""
    runtime = train_output.metrics["train_runtime"]
    tokens = trainer.state.num_input_tokens_seen - token_counter.session_start_tokens
    world_size = trainer.accelerator.num_processes
    on_gpu = torch.cuda.is_available() and trainer.args.device.type == "cuda"
    results = {
        "train_runtime": runtime,
        "train_tokens": tokens,
        "train_tokens_per_second": tokens / runtime if runtime else 0.0,
        "total_train_tokens": trainer.state.num_input_tokens_seen,
        "gpu_hours": runtime * world_size / 3600 if on_gpu else 0.0,
        "world_size": world_size,
        "quantization": next((q for q in ("4bit", "8bit") if getattr(trainer.model, f"is_loaded_in_{q}", False)), None),
        "device": torch.cuda.get_device_name(trainer.args.device) if on_gpu else "cpu",
        "global_step": trainer.state.global_step,
        "train_loss": train_output.training_loss,
        "resumed_from_checkpoint": resumed_from,
    }
    if trainer.accelerator.is_main_process:
        path = Path(trainer.args.output_dir) / TRAIN_RESULTS_FILE
        path.write_text(json.dumps(results, indent=2) + "\n")
    return results


# ----------------------------------------------------------------------------------------------------------- the run
class TrainingRun(NamedTuple):
    trainer: object
    output: object  # TrainOutput
    token_counter: TokenCounterCallback
    resumed_from: str | None


def run_training(job_type: str, script_args, training_args, model_args, build_trainer: Callable) -> TrainingRun | None:
    """What train.sft and train.dpo share: skip a finished run, guard the data, derive the batch split, open W&B,
    build the trainer, resume from the newest checkpoint, train. None when this process has nothing left to do
    (already finished, or preempted after saving a checkpoint); otherwise the finished run, for the caller to save."""
    if already_finished(training_args):
        print(f"{training_args.output_dir}: already trained to the end ({TRAIN_RESULTS_FILE}); nothing to do")
        return None
    preemption, token_counter = PreemptionCallback(), TokenCounterCallback()  # handlers first: loading takes time
    state = PartialState()
    batch_line = apply_global_batch(script_args, training_args, state.num_processes)
    datasets, manifest, digest = load_guarded_dataset(
        script_args.dataset_name, script_args.allow_unguarded_dataset, script_args.dataset_train_split
    )
    config = resolved_config(script_args, training_args, model_args)
    init_wandb(script_args, training_args, job_type, model_args.model_name_or_path, manifest, digest, config)
    if training_args.include_num_input_tokens_seen == "no":
        training_args.include_num_input_tokens_seen = "non_padding"  # train_results.json reports tokens/s
    callbacks = [preemption, token_counter, ScheduleReport()]
    if script_args.early_stopping_patience is not None:  # the run ends early; the best checkpoint is reloaded
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=script_args.early_stopping_patience))
    trainer = build_trainer(script_args, training_args, model_args, datasets, callbacks)
    guard_wandb(trainer)
    trainer.accelerator.print(batch_line)
    resume_from = last_checkpoint(training_args)
    if resume_from:
        step = json.loads((Path(resume_from) / "trainer_state.json").read_text())["global_step"]
        trainer.accelerator.print(f"resuming from {resume_from} (step {step})")
        restore_trained_adapter(trainer.model, resume_from)
    with resume_context(resume_from, state.num_processes, trainer):
        train_output = trainer.train(resume_from_checkpoint=resume_from)
    if preemption.stopped_at_step is not None:
        step = preemption.stopped_at_step
        trainer.accelerator.print(
            f"preempted: {preemption.signal_name} at step {step}, checkpoint-{step} saved; re-run to resume"
        )
        trainer.end()
        return None
    return TrainingRun(trainer, train_output, token_counter, resume_from)


def finish_training(run: TrainingRun, label: str) -> None:
    """After the caller saved the model: train_results.json, a closing line, and the W&B run closed."""
    results = write_train_results(run.trainer, run.output, run.token_counter, run.resumed_from)
    run.trainer.accelerator.print(f"{label} done: {run.trainer.args.output_dir} {results}")
    run.trainer.end()
