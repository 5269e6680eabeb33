"""Write the eval config of one checkpoint for an eval array task; print its path.

`python slurm/checkpoint_eval_config.py --config configs/eval/X.yaml --checkpoint runs/X/sft/checkpoint-200`

The task config is the given config with `models` replaced by the checkpoint alone and `output_dir` moved to
`<output_dir>/checkpoints/<run>-<checkpoint>`, so every task shares decoding, test sets and judges. A PEFT checkpoint
(adapter_config.json) is evaluated on the base model its adapter config names; any other folder is taken to be a
full (merged) model.
"""

import argparse
import json
from pathlib import Path

import yaml


def checkpoint_model(checkpoint: Path) -> dict:
    """The eval `models` entry for a checkpoint folder (adapter on its base, or a merged model)."""
    name = f"{checkpoint.parent.name}-{checkpoint.name}"
    adapter_config = checkpoint / "adapter_config.json"
    if adapter_config.is_file():
        base = json.loads(adapter_config.read_text()).get("base_model_name_or_path")
        if not base:
            raise SystemExit(f"{adapter_config}: field 'base_model_name_or_path' is missing or empty")
        return {"name": name, "model": base, "adapter": str(checkpoint)}
    if (checkpoint / "config.json").is_file():
        return {"name": name, "model": str(checkpoint)}
    raise SystemExit(f"{checkpoint}: neither a PEFT adapter (adapter_config.json) nor a model (config.json)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="the eval YAML the array evaluates with")
    parser.add_argument("--checkpoint", type=Path, required=True, help="checkpoint folder of this task")
    args = parser.parse_args()

    config = yaml.safe_load(args.config.read_text())
    if not isinstance(config, dict):
        raise SystemExit(f"{args.config}: expected a YAML mapping")
    model = checkpoint_model(args.checkpoint)
    out_dir = Path(config.get("output_dir", "runs/eval")) / "checkpoints" / model["name"]
    config.update(models=[model], output_dir=str(out_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    task_config = out_dir / "eval_config.yaml"
    task_config.write_text(yaml.safe_dump(config, sort_keys=False))
    print(task_config)


if __name__ == "__main__":
    main()
