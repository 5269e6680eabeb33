"""Direct preference optimisation on the data pipeline's DPO view, continuing the SFT policy (TRL DPOTrainer).

    accelerate launch --config_file accelerate_configs/single_gpu.yaml -m train.dpo \\
        --config configs/train/qwen3-8b/dpo_lora.yaml [--any_field value ...]

Two starting points:
- ``sft_adapter: DIR`` (the recipes): the base model plus the SFT LoRA adapter loaded trainable. TRL copies it into a
  frozen "ref" adapter, so the reference policy is the SFT policy without a second model in memory.
- ``model_name_or_path: MERGED_SFT_DIR`` with ``use_peft: true`` and no ``sft_adapter``: a fresh LoRA on the merged
  SFT model (``python -m train.merge``); the reference is the same model with the adapter disabled.
Resume and SIGUSR1/SIGTERM preemption behave as in train.sft.
"""

import json
import shutil
import sys
from functools import partial
from pathlib import Path

import transformers
from peft import PeftModel
from trl import DPOConfig, DPOTrainer, ModelConfig, get_peft_config, get_quantization_config

from core.chat_templates import training_chat_template
from core.cli import run_command
from core.llm.base import adapter_fingerprint
from train.data import training_splits
from train.preflight import command, train_command
from train.recipes import DPOScriptArguments, dpo_parser
from train.runner import finish_training, model_init_kwargs, run_training

COLUMNS = ["prompt", "chosen", "rejected"]


def load_policy(script_args: DPOScriptArguments, training_args: DPOConfig, model_args: ModelConfig):
    """The model handed to DPOTrainer: the SFT PeftModel (trainable) or the model id for a fresh LoRA."""
    if script_args.sft_adapter is None:
        return model_args.model_name_or_path
    if model_args.use_peft:
        raise ValueError("sft_adapter continues an existing adapter: set use_peft false (TRL rejects both)")
    kwargs = model_init_kwargs(model_args, training_args)
    quantization = get_quantization_config(model_args)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        model_args.model_name_or_path, quantization_config=quantization, **kwargs
    )
    # No prepare_model_for_kbit_training: it upcasts embeddings, lm_head and norms to fp32 (+2.5 GB on Qwen3-8B).
    # A 4-bit base is handled as TRL's SFT QLoRA path does it: frozen layers in the compute dtype, input gradients
    # enabled for checkpointing and the trainable adapter cast to bf16, all inside DPOTrainer.
    return PeftModel.from_pretrained(model, script_args.sft_adapter, is_trainable=True)


def build_trainer(
    script_args: DPOScriptArguments, training_args: DPOConfig, model_args: ModelConfig, datasets, callbacks=()
) -> DPOTrainer:
    """The DPOTrainer for these configs, datasets already loaded (and guarded); tokenisation happens here."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(script_args.sft_adapter or model_args.model_name_or_path)
    # DPOTrainer renders with the tokenizer's own template; the training variant (when TRL has one) keeps reasoning
    # that DeepSeek-R1-Distill's inference template cuts at </think>. main() saves the original template back.
    tokenizer.inference_chat_template = tokenizer.chat_template
    tokenizer.chat_template = training_chat_template(tokenizer)
    train_dataset, eval_dataset = training_splits(script_args, training_args, datasets, tokenizer, COLUMNS)
    policy = load_policy(script_args, training_args, model_args)
    from_id = isinstance(policy, str)
    training_args.model_init_kwargs = model_init_kwargs(model_args, training_args) if from_id else None
    trainer = DPOTrainer(
        model=policy,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args) if from_id else None,
        quantization_config=get_quantization_config(model_args) if from_id else None,
        callbacks=list(callbacks),
    )
    match_reference_dtype(trainer.model)
    return trainer


def match_reference_dtype(model) -> None:
    """DPOTrainer casts the trainable QLoRA adapter to bf16 but leaves its frozen "ref" copy in fp32; the reference
    must compute exactly as the policy does, or step 0 starts with a spurious reward margin instead of 0."""
    policy = {name: p for name, p in model.named_parameters() if ".default." in name}
    for name, param in model.named_parameters():
        twin = policy.get(name.replace(".ref.", ".default."))
        if ".ref." in name and twin is not None and param.dtype != twin.dtype:
            param.data = param.data.to(twin.dtype)


def main(script_args: DPOScriptArguments, training_args: DPOConfig, model_args: ModelConfig) -> int:
    run = run_training("dpo", script_args, training_args, model_args, build_trainer)
    if run is not None:
        tokenizer = run.trainer.processing_class
        tokenizer.chat_template = tokenizer.inference_chat_template  # save the model's own template, not TRL's
        run.trainer.save_model(training_args.output_dir)
        run.trainer.save_state()  # trainer_state.json: TRL's logged rewards (validation pairs included), for eval
        if run.trainer.accelerator.is_main_process:
            # PEFT saves every adapter; "ref" is the frozen SFT copy (identical to sft_adapter), not the result.
            shutil.rmtree(Path(training_args.output_dir) / "ref", ignore_errors=True)
            write_reference_record(script_args, training_args, model_args)
        finish_training(run, "DPO")
    return 0


REFERENCE_RECORD = "dpo_reference.json"  # read by eval/heldout/dpo_reference.py


def write_reference_record(script_args: DPOScriptArguments, training_args: DPOConfig, model_args: ModelConfig):
    """The DPO reference this adapter was trained against (the SFT adapter, by path and by the sha256 of its files;
    or the base model itself when no sft_adapter was given) and β, so the eval can score the implicit reward TRL
    optimised against the same reference."""
    record = {
        "base_model": model_args.model_name_or_path,
        "sft_adapter": script_args.sft_adapter,
        "sft_adapter_sha256": adapter_fingerprint(script_args.sft_adapter),
        "beta": training_args.beta,
        "loss_type": training_args.loss_type,
    }
    path = Path(training_args.output_dir) / REFERENCE_RECORD
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


COMMAND = command("dpo", "DPO with LoRA on the data pipeline's DPO view, continuing the SFT policy, from one YAML.")


make_parser = dpo_parser


if __name__ == "__main__":
    sys.exit(run_command(partial(train_command, make_parser, main), COMMAND, make_parser))
