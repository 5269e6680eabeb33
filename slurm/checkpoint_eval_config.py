"""Write the eval config an eval job runs with; print its path.

One checkpoint per eval array task:
    python slurm/checkpoint_eval_config.py --config configs/eval/X.yaml --checkpoint runs/X/sft/checkpoint-200
The task config is the given config with `models` replaced by the checkpoint alone and `output_dir` moved to
`<output_dir>/checkpoints/<run>-<checkpoint>`, so every task shares decoding, test sets and judges. A PEFT checkpoint
(adapter_config.json) is evaluated on the base model its adapter config names; any other folder is taken to be a
full (merged) model.

The chain's own adapters (slurm/submit_pipeline.sh, at submission):
    python slurm/checkpoint_eval_config.py --config configs/eval/X.yaml --chain SFT_YAML DPO_YAML \
        [--sft-args "..."] [--dpo-args "..."] [--dry-run]
The eval config's adapter models are re-pointed to the output_dirs the chain's SFT and DPO jobs write (their YAML
plus CLI overrides), and every model on the adapters' base to the chain's base model, so the eval job scores what the
chain trained, never another run's adapters that happen to sit at the config's paths. Written to
`<output_dir>/chain_eval_config.yaml` (not written with --dry-run).
"""

import argparse
import json
import shlex
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


def load_mapping(path: Path) -> dict:
    config = yaml.safe_load(path.read_text())
    if not isinstance(config, dict):
        raise SystemExit(f"{path}: expected a YAML mapping")
    return config


def training_setting(config_path: Path, overrides: str, key: str) -> str | None:
    """A key of a training run as it will run: the YAML's value unless the CLI overrides (`--key V` / `--key=V`)."""
    value = load_mapping(config_path).get(key)
    args = shlex.split(overrides)
    for i, arg in enumerate(args):
        if arg == f"--{key}" and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(f"--{key}="):
            value = arg.split("=", 1)[1]
    return value


def chain_models(config: dict, sft: Path, dpo: Path, sft_args: str, dpo_args: str) -> list[dict]:
    """The eval config's models with the chain's base model and its SFT / SFT+DPO adapters."""
    base = training_setting(sft, sft_args, "model_name_or_path")
    sft_out, dpo_out = training_setting(sft, sft_args, "output_dir"), training_setting(dpo, dpo_args, "output_dir")
    continues = training_setting(dpo, dpo_args, "sft_adapter")
    if continues is not None and continues != sft_out:
        raise SystemExit(
            f"{dpo}: DPO continues sft_adapter {continues} but the chain's SFT writes {sft_out}; pass "
            f"--dpo-args '--sft_adapter {sft_out}' or align the configs"
        )
    models = [dict(m) for m in config.get("models") or []]
    tuned = [m for m in models if m.get("adapter")]
    if len(tuned) != 2:
        raise SystemExit(
            f"eval config: expected two adapter models (SFT, then SFT+DPO) to point at the chain, found {len(tuned)}"
        )
    old_base = tuned[0]["model"]
    for model in models:
        if model["model"] == old_base:
            model["model"] = base
    tuned[0].update(adapter=sft_out, train_runs=[sft_out])
    tuned[1].update(adapter=dpo_out, train_runs=[sft_out, dpo_out])
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="the eval YAML")
    parser.add_argument("--checkpoint", type=Path, help="checkpoint folder of this array task")
    parser.add_argument("--chain", type=Path, nargs=2, metavar=("SFT_YAML", "DPO_YAML"), help="the chain's recipes")
    parser.add_argument("--sft-args", default="", help="the chain's CLI overrides of the SFT job")
    parser.add_argument("--dpo-args", default="", help="the chain's CLI overrides of the DPO job")
    parser.add_argument("--dry-run", action="store_true", help="--chain: print the models, write nothing")
    args = parser.parse_args()
    if (args.checkpoint is None) == (args.chain is None):
        parser.error("give exactly one of --checkpoint and --chain")

    config = load_mapping(args.config)
    if args.chain:
        config["models"] = chain_models(config, *args.chain, args.sft_args, args.dpo_args)
        out_dir = Path(config.get("output_dir", "runs/eval"))
        task_config = out_dir / "chain_eval_config.yaml"
        if args.dry_run:
            print(f"{task_config} (not written: dry run) models: {json.dumps(config['models'])}")
            return
    else:
        model = checkpoint_model(args.checkpoint)
        out_dir = Path(config.get("output_dir", "runs/eval")) / "checkpoints" / model["name"]
        config.update(models=[model], output_dir=str(out_dir))
        task_config = out_dir / "eval_config.yaml"
    out_dir.mkdir(parents=True, exist_ok=True)
    task_config.write_text(yaml.safe_dump(config, sort_keys=False))
    print(task_config)


if __name__ == "__main__":
    main()
