"""Supervised fine-tuning with LoRA / QLoRA on the data pipeline's SFT view (TRL SFTTrainer).

    accelerate launch --config_file accelerate_configs/single_gpu.yaml -m train.sft \\
        --config configs/train/qwen3-8b/sft_lora.yaml [--any_field value ...]

All knobs come from one YAML (TrlParser: ``TrainScriptArguments`` + ``SFTConfig`` + ``ModelConfig``; unknown keys
fail; the ``env:`` block is exported). Re-running the same command resumes from the newest checkpoint in output_dir.
SIGUSR1 / SIGTERM save a checkpoint and exit 0 without the final adapter (see ``PreemptionCallback``).
"""

import os
import sys
from functools import partial

import transformers
from accelerate import PartialState
from transformers.integrations import is_deepspeed_zero3_enabled
from trl import ModelConfig, SFTConfig, SFTTrainer, TrlParser, get_peft_config, get_quantization_config

from data_pipeline.cli import run_command
from train.common import TrainScriptArguments, finish_training, run_training, training_splits
from train.preflight import command, train_command


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


def build_trainer(
    script_args: TrainScriptArguments, training_args: SFTConfig, model_args: ModelConfig, datasets, callbacks=()
) -> SFTTrainer:
    """The SFTTrainer for these configs, datasets already loaded (and guarded); tokenisation happens here."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(
        model_args.model_name_or_path, revision=model_args.model_revision
    )
    train_dataset, eval_dataset = training_splits(script_args, training_args, datasets, tokenizer, ["messages"])
    training_args.model_init_kwargs = model_init_kwargs(model_args, training_args)
    return SFTTrainer(
        model=model_args.model_name_or_path,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
        quantization_config=get_quantization_config(model_args),
        callbacks=list(callbacks),
    )


def main(script_args: TrainScriptArguments, training_args: SFTConfig, model_args: ModelConfig) -> int:
    run = run_training("sft", script_args, training_args, model_args, build_trainer)
    if run is not None:
        run.trainer.save_model(training_args.output_dir)
        finish_training(run, "SFT")
    return 0


COMMAND = command("sft", "Supervised fine-tuning with LoRA / QLoRA on the data pipeline's SFT view, from one YAML.")


def make_parser() -> TrlParser:
    return TrlParser((TrainScriptArguments, SFTConfig, ModelConfig))


if __name__ == "__main__":
    sys.exit(run_command(partial(train_command, make_parser, main), COMMAND, make_parser))
