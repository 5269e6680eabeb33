"""What train.sft and train.dpo share: the dataset guard, chat-template handling, W&B naming, resume, preemption.

Kept to the pieces both entry points need; each piece is a plain function or one TrainerCallback.
"""

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
from accelerate import PartialState
from datasets import Dataset, DatasetDict, load_from_disk
from transformers import PreTrainedTokenizerBase, TrainerCallback
from trl.chat_template_utils import get_training_chat_template

from train.plan import ScheduleReport, apply_global_batch
from train.preemption import PreemptionCallback, guard_wandb
from train.resume import TRAIN_RESULTS_FILE, already_finished, last_checkpoint, resume_context

logger = logging.getLogger(__name__)

WANDB_RUN_ID_FILE = "wandb_run_id"
# DeepSeek-R1-Distill always opens "<think>\n" in its generation prompt; an answer without reasoning is trained as an
# empty, closed think block so the prompt stays a prefix of prompt+answer (as TRL's DPO tokenisation needs).
EMPTY_THINK = "<think>\n\n</think>\n\n"
# keep_reasoning: the data pipeline's reasoning column for each conversation column (data_pipeline/views.py).
REASONING_COLUMNS = {"messages": "reasoning", "chosen": "chosen_reasoning", "rejected": "rejected_reasoning"}


class DatasetGuardError(RuntimeError):
    """The training data has no provenance manifest, or its manifest shows cross-split leakage."""


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


# ---------------------------------------------------------------------------------------------------------------- data
def check_manifest(manifest_path: Path) -> tuple[str | None, dict, str]:
    """(problem or None, manifest, sha256 of the file) for the data manifest at ``manifest_path``."""
    if not manifest_path.is_file():
        return f"{manifest_path}: no data manifest next to the dataset", {}, ""
    raw = manifest_path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    try:
        manifest = json.loads(raw)
    except json.JSONDecodeError as error:
        return f"{manifest_path}:{error.lineno}: not valid JSON ({error.msg})", {}, digest
    pairs = manifest.get("leakage", {}).get("cross_split_pairs")
    if not isinstance(pairs, int):
        return (
            f"{manifest_path}: field 'leakage.cross_split_pairs': missing or not an integer ({pairs!r})",
            manifest,
            digest,
        )
    if pairs > 0:
        return (
            f"{manifest_path}: field 'leakage.cross_split_pairs': {pairs} near-duplicate pairs cross splits",
            manifest,
            digest,
        )
    return None, manifest, digest


def load_guarded_dataset(
    dataset_name: str, allow_unguarded: bool, train_split: str = "train"
) -> tuple[DatasetDict, dict, str]:
    """Load ``<out>/<view>`` and its ``<out>/manifest.json``; refuse missing provenance, cross-split leakage, or a
    missing or empty training split (e.g. a DPO view where the judge left no preference pair).

    Returns (datasets, manifest, manifest_sha256). With ``allow_unguarded`` a failed check is logged and recorded in
    the manifest dict under ``"guard_override"`` (logged to W&B with the manifest), never silently ignored.
    """
    problem, manifest, digest = check_manifest(Path(dataset_name).resolve().parent / "manifest.json")
    if problem and not allow_unguarded:
        raise DatasetGuardError(f"{problem}; refusing to train (pass --allow_unguarded_dataset to override)")
    if problem:
        logger.warning("dataset guard overridden: %s", problem)
        manifest = {**manifest, "guard_override": problem}
    datasets = load_from_disk(dataset_name)
    if train_split not in datasets or len(datasets[train_split]) == 0:
        raise DatasetGuardError(f"{dataset_name}: split '{train_split}' is missing or has no rows; nothing to train on")
    return datasets, manifest, digest


def think_block(reasoning: str) -> str:
    """The think block an assistant answer is trained with: the trace when there is one, else empty and closed."""
    return f"<think>\n{reasoning}\n</think>\n\n" if reasoning.strip() else EMPTY_THINK


def always_thinks(template: str) -> bool:
    """A DeepSeek-R1-Distill-style template: it opens <think> at every answer, with no switch to turn that off."""
    return "</think>" in template and "enable_thinking" not in template


def training_chat_template(tokenizer: PreTrainedTokenizerBase) -> str:
    """The template train/ renders conversations with: TRL's training variant of the tokenizer's template (it keeps
    reasoning that DeepSeek-R1-Distill's inference template cuts at </think>), else the tokenizer's own."""
    try:
        return get_training_chat_template(tokenizer) or tokenizer.chat_template
    except ValueError:  # a family TRL has no training template for
        logger.warning("no TRL training chat template for this tokenizer; rendering with its own template")
        return tokenizer.chat_template


def prepare_conversations(
    dataset: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    columns: list[str],
    enable_thinking: bool,
    keep_reasoning: bool = False,
) -> Dataset:
    """Make each row render the way the model family is trained; the answers' words are left as they are.

    - Qwen3 templates (``enable_thinking`` switch): a per-row ``chat_template_kwargs`` that TRL forwards to
      ``apply_chat_template``, so thinking is off for every row unless asked.
    - DeepSeek-R1-Distill templates (always think): an assistant turn without ``</think>`` gets an empty think block,
      matching the ``<think>\\n`` the template opens at inference. Reasoning that is present is kept, because the
      training template (TRL's ``deepseek_r1_distill_training``) does not cut at ``</think>``.
    - ``keep_reasoning``: an answer whose row has a reasoning trace (views' reasoning columns) is trained as
      ``<think>\ntrace\n</think>\n\nanswer``, so tuning keeps the model reasoning; rows without a trace are
      trained as above. Without it, SFT/DPO on answers teaches R1-Distill to skip reasoning (an empty think block),
      which the eval's efficiency split shows as a drop in thinking share.
    """
    template = tokenizer.chat_template or ""
    traces = {c: REASONING_COLUMNS[c] for c in columns if c in REASONING_COLUMNS} if keep_reasoning else {}
    missing = [name for name in traces.values() if name not in dataset.column_names]
    if missing:
        raise ValueError(
            f"keep_reasoning: the dataset has no {missing} column(s); build it with the data pipeline's "
            "generate.keep_reasoning: true and a reasoning generator, or train with keep_reasoning: false"
        )
    qwen3 = "enable_thinking" in template
    if qwen3 and keep_reasoning and not enable_thinking:
        raise ValueError("keep_reasoning on a Qwen3 template needs enable_thinking: true (off, it drops reasoning)")

    def with_think(row: dict) -> dict:
        def content(message: dict, column: str) -> str:
            if message["role"] != "assistant" or "</think>" in message["content"]:
                return message["content"]
            trace = row[traces[column]] if column in traces else ""
            if qwen3 and not trace.strip():
                return message["content"]  # Qwen3's template writes its own empty block when thinking is off
            return think_block(trace) + message["content"]

        return {column: [{**m, "content": content(m, column)} for m in row[column]] for column in columns}

    if qwen3:
        dataset = dataset.map(lambda _: {"chat_template_kwargs": {"enable_thinking": enable_thinking}})
        return dataset.map(with_think) if keep_reasoning else dataset
    if always_thinks(template):
        return dataset.map(with_think)
    return dataset


def training_splits(
    script_args: TrainScriptArguments, training_args, datasets: DatasetDict, tokenizer, columns: list[str]
) -> tuple[Dataset, Dataset | None]:
    """(train split, eval split or None when evaluation is off), each prepared by ``prepare_conversations``."""

    def prepare(split: str) -> Dataset:
        return prepare_conversations(
            datasets[split], tokenizer, columns, script_args.enable_thinking, script_args.keep_reasoning
        )

    evaluate = training_args.eval_strategy != "no"
    return prepare(script_args.dataset_train_split), prepare(script_args.dataset_test_split) if evaluate else None


# ---------------------------------------------------------------------------------------------------------- W&B + runs
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
    trainer = build_trainer(script_args, training_args, model_args, datasets, callbacks)
    guard_wandb(trainer)
    trainer.accelerator.print(batch_line)
    resume_from = last_checkpoint(training_args)
    if resume_from:
        step = json.loads((Path(resume_from) / "trainer_state.json").read_text())["global_step"]
        trainer.accelerator.print(f"resuming from {resume_from} (step {step})")
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
