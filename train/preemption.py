"""Preemption that always saves: a signal checkpoints at the current step on every rank, and W&B cannot stop it.

SLURM asks a job to stop in two ways: ``--signal=B:USR1@N`` ahead of the time limit (the batch script forwards USR1 to
the trainers) and ``scontrol requeue`` / preemption, which sends SIGTERM to every process of the step at once, the
W&B service (wandb-core) included. From then on every W&B call of the trainer raises (``ConnectionResetError``);
transformers' WandbCallback would raise out of the step before the checkpoint is written. ``TolerantWandbCallback``
turns a W&B failure into one warning and W&B off for the rest of this process: the requeued job resumes the same W&B
run (train.runner.init_wandb) from the checkpoint.
"""

import signal

import torch
from transformers import TrainerCallback
from transformers.integrations import WandbCallback


class PreemptionCallback(TrainerCallback):
    """SIGUSR1 or SIGTERM: finish the current optimizer step, save a checkpoint, stop; the re-run resumes from it.

    Ranks may see the signal at different steps (or only one rank may get it), so the flag is max-reduced across
    ranks every step and all ranks stop and save together.
    """

    SIGNALS = (signal.SIGUSR1, signal.SIGTERM)

    def __init__(self):
        self.received: int | None = None
        self.stopped_at_step: int | None = None
        for signum in self.SIGNALS:
            signal.signal(signum, self._record)

    def _record(self, signum, _frame) -> None:
        self.received = signum

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.received).name if self.received else "a signal on another rank"

    def on_step_end(self, args, state, control, **kwargs):
        flag = torch.tensor([0 if self.received is None else 1], device=args.device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        if flag.item():
            control.should_save = True
            control.should_training_stop = True
            self.stopped_at_step = state.global_step
        return control


class TolerantWandbCallback(TrainerCallback):
    """transformers' WandbCallback, except that a W&B error disables W&B for this process instead of the run."""

    def __init__(self, wandb_callback: WandbCallback):
        self.wandb_callback = wandb_callback
        self.failure: str | None = None

    def _forward(self, event: str, args, state, control, **kwargs):
        if self.failure is not None:
            return None
        try:
            return getattr(self.wandb_callback, event)(args, state, control, **kwargs)
        except Exception as error:  # noqa: BLE001 - any W&B failure; training and checkpointing must go on
            self.failure = f"{type(error).__name__}: {error}"
            print(
                f"W&B {event} failed at step {state.global_step} ({self.failure}); training continues without W&B "
                "in this process (a re-run resumes the same W&B run)",
                flush=True,
            )
            return None

    def on_train_begin(self, args, state, control, **kwargs):
        return self._forward("on_train_begin", args, state, control, **kwargs)

    def on_log(self, args, state, control, **kwargs):
        return self._forward("on_log", args, state, control, **kwargs)

    def on_save(self, args, state, control, **kwargs):
        return self._forward("on_save", args, state, control, **kwargs)

    def on_predict(self, args, state, control, **kwargs):
        return self._forward("on_predict", args, state, control, **kwargs)

    def on_train_end(self, args, state, control, **kwargs):
        return self._forward("on_train_end", args, state, control, **kwargs)


def guard_wandb(trainer) -> TolerantWandbCallback | None:
    """Swap the trainer's WandbCallback (present when report_to has wandb) for the tolerant wrapper."""
    wandb_callback = trainer.pop_callback(WandbCallback)
    if wandb_callback is None:
        return None
    tolerant = TolerantWandbCallback(wandb_callback)
    trainer.add_callback(tolerant)
    return tolerant
