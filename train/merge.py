"""Merge a LoRA adapter into its base model and save a plain model (+ tokenizer) for evaluation and serving.

    python -m train.merge --adapter runs/qwen3-8b/dpo_lora --output runs/qwen3-8b/dpo_merged [--base MODEL]

The base model comes from the adapter's adapter_config.json (``base_model_name_or_path``) unless --base is given.
The merged model keeps the base model's dtype; the tokenizer (with its inference chat template) comes from the
adapter folder when the trainer saved one there, else from the base. The model is written beside --output and swapped
in whole when complete (core/publish.py): a failed merge leaves the previous merged model as it was, a second merge
into the same folder stops at once, and no file of the previous model (an old shard) is left behind.
"""

import argparse
import json
import sys
from pathlib import Path

from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from core.cli import Command, run_command
from core.publish import publishing

COMMAND = Command(
    name="python -m train.merge",
    purpose="Merge a LoRA adapter into its base model and save a plain model (+ tokenizer) for eval and serving.",
    example="python -m train.merge --adapter runs/qwen3-8b/dpo_lora --output runs/qwen3-8b/dpo_merged",
)


def merge(adapter: Path, output: Path, base: str | None = None) -> Path:
    config_path = adapter / "adapter_config.json"
    if not config_path.is_file():
        raise FileNotFoundError(2, "not a PEFT adapter folder (no adapter_config.json)", str(config_path))
    base = base or json.loads(config_path.read_text())["base_model_name_or_path"]
    with publishing(output, last=("config.json",)) as staging:  # config.json: what from_pretrained reads first
        model = AutoModelForCausalLM.from_pretrained(base, dtype="auto")
        merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
        merged.save_pretrained(staging)
        tokenizer_source = adapter if (adapter / "tokenizer_config.json").is_file() else base
        AutoTokenizer.from_pretrained(tokenizer_source).save_pretrained(staging)
    return output


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=COMMAND.name, description=COMMAND.purpose)
    parser.add_argument("--adapter", type=Path, required=True, help="adapter folder written by train.sft / train.dpo")
    parser.add_argument("--output", type=Path, required=True, help="folder for the merged model and tokenizer")
    parser.add_argument("--base", help="base model id or folder (default: from adapter_config.json)")
    return parser


def main(argv: list[str]) -> int:
    args = make_parser().parse_args(argv)
    print(f"merged model: {merge(args.adapter, args.output, args.base)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, COMMAND, make_parser))
