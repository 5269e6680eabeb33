"""Supervised fine-tuning with LoRA / QLoRA on the data pipeline's SFT view (TRL SFTTrainer).

    accelerate launch --config_file accelerate_configs/single_gpu.yaml -m train.sft \\
        --config configs/train/qwen3-8b/sft_lora.yaml [--any_field value ...]

All knobs come from one YAML (TrlParser: ``TrainScriptArguments`` + ``SFTConfig`` + ``ModelConfig``; unknown keys
fail; the ``env:`` block is exported). Re-running the same command resumes from the newest checkpoint in output_dir.
SIGUSR1 / SIGTERM save a checkpoint and exit 0 without the final adapter (see ``PreemptionCallback``).
"""

import sys
from functools import partial

import transformers
from trl import ModelConfig, SFTConfig, SFTTrainer, get_peft_config, get_quantization_config

from core.chat_templates import training_chat_template
from core.cli import run_command
from train.data import training_splits
from train.preflight import command, train_command
from train.recipes import TrainScriptArguments, sft_parser
from train.runner import finish_training, model_init_kwargs, run_training


def build_trainer(
    script_args: TrainScriptArguments, training_args: SFTConfig, model_args: ModelConfig, datasets, callbacks=()
) -> SFTTrainer:
    """The SFTTrainer for these configs, datasets already loaded (and guarded); tokenisation happens here."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(
        model_args.model_name_or_path, revision=model_args.model_revision
    )
    # Rendered with the family's training template (its {% generation %} markers mask the loss to the assistant turns,
    # closing end-of-turn token included; TRL has none for some families: core/chat_templates.py supplies those).
    # main() saves the model's own template back.
    tokenizer.inference_chat_template = tokenizer.chat_template
    tokenizer.chat_template = training_chat_template(tokenizer)
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
        tokenizer = run.trainer.processing_class
        tokenizer.chat_template = (
            tokenizer.inference_chat_template
        )  # save the model's own template, not the training one
        run.trainer.save_model(training_args.output_dir)
        finish_training(run, "SFT")
    return 0


COMMAND = command("sft", "Supervised fine-tuning with LoRA / QLoRA on the data pipeline's SFT view, from one YAML.")


make_parser = sft_parser


if __name__ == "__main__":
    sys.exit(run_command(partial(train_command, make_parser, main), COMMAND, make_parser))
