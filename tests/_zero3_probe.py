"""Run train.sft / train.dpo exactly as `accelerate launch -m train.<stage>` does, and before the run closes record
what ZeRO-3 did: how many parameters are partitioned across ranks, and the trained LoRA weights gathered from the
shards (written to <output_dir>/gathered_adapter.safetensors by rank 0) for the test to compare with the saved adapter.

    accelerate launch --config_file ZERO3 tests/_zero3_probe.py sft|dpo --config ... [overrides]
"""

import json
import sys
from pathlib import Path

import deepspeed
import torch
from safetensors.torch import save_file

from train import dpo, sft


def record_zero3(run) -> None:
    engine = run.trainer.model_wrapped
    params = dict(engine.module.named_parameters())
    partitioned = [n for n, p in params.items() if hasattr(p, "ds_id") and p.ds_tensor.numel() < p.ds_numel]
    lora = {n: p for n, p in params.items() if ".lora_" in n and ".default." in n}
    with deepspeed.zero.GatheredParameters(list(lora.values())):
        gathered = {n.replace(".default", ""): p.detach().clone().contiguous() for n, p in lora.items()}
    if torch.distributed.get_rank() == 0:
        out = Path(run.trainer.args.output_dir)
        save_file(gathered, out / "gathered_adapter.safetensors")
        stats = {"parameters": len(params), "partitioned": len(partitioned), "lora": len(lora)}
        (out / "zero3_stats.json").write_text(json.dumps(stats))


def main() -> int:
    stage, argv = sys.argv[1], sys.argv[2:]
    module = {"sft": sft, "dpo": dpo}[stage]
    finish = module.finish_training

    def record_then_finish(run, label):
        record_zero3(run)
        finish(run, label)

    module.finish_training = record_then_finish
    return module.main(*module.make_parser().parse_args_and_config(argv))


if __name__ == "__main__":
    sys.exit(main())
