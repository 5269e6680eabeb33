"""The preflight of every stage of a SLURM chain, at submission (slurm/submit_pipeline.sh runs it).

    PYTHONPATH=. python slurm/preflight_chain.py [--after-job JOBID] --stage data CONFIG [--key value ...] \\
        --stage sft CONFIG ... --stage dpo CONFIG ... --stage eval CONFIG ...

Each stage's items as its own ``--check`` prints them (data_pipeline/preflight.py), with what the chain provides
reported as such instead of failed: LLM roles on 127.0.0.1 are served inside the data job (slurm/serve_local_llms.py),
and inputs under an earlier stage's output_dir (the dataset for SFT, the SFT adapter for DPO, ...) are written by that
stage. With ``--after-job`` every missing input may come from that job. Exit code 2 when any stage has a problem.
"""

import sys

from core.cli import Command, UserError, is_user_error, one_line, run_command
from core.preflight import Preflight

COMMAND = Command(
    name="slurm/preflight_chain.py",
    purpose="Preflight every stage of a SLURM chain at submission (run by slurm/submit_pipeline.sh).",
    example="PYTHONPATH=. python slurm/preflight_chain.py --stage data configs/data/culturax.yaml "
    "--stage sft configs/train/qwen3-8b/sft_lora.yaml",
)
STAGES = ("data", "sft", "dpo", "eval")


def check_stage(stage: str, argv: list[str], check: Preflight) -> str | None:
    """Add the stage's items to ``check``; returns the stage's output_dir (what later stages may read)."""
    if stage == "data":
        from data_pipeline.config import parse_config
        from data_pipeline.preflight import check_pipeline

        cfg = parse_config(argv)
        check_pipeline(cfg, check)
        return cfg.output_dir
    if stage in ("sft", "dpo"):
        from train.preflight import check_training
        from train.recipes import dpo_parser, parse_for_check, sft_parser

        parsed = parse_for_check(sft_parser if stage == "sft" else dpo_parser, argv, check)
        check_training(*parsed, check)
        return parsed[1].output_dir
    from eval.config import parse_config as parse_eval_config
    from eval.preflight import check_eval

    cfg = parse_eval_config(argv)
    check_eval(cfg, check)
    return cfg.output_dir


def split_stages(argv: list[str]) -> list[tuple[str, list[str]]]:
    """``--stage NAME CONFIG ARGS...`` groups -> [(NAME, ["--config", CONFIG, *ARGS])]."""
    stages: list[tuple[str, list[str]]] = []
    for arg in argv:
        if arg == "--stage":
            stages.append(("", []))
        elif not stages:
            raise UserError(f"unexpected argument '{arg}' before the first --stage")
        elif not stages[-1][0]:
            if arg not in STAGES:
                raise UserError(f"unknown stage '{arg}' (stages: {', '.join(STAGES)})")
            stages[-1] = (arg, [])
        elif not stages[-1][1]:
            stages[-1][1].extend(["--config", arg])
        else:
            stages[-1][1].append(arg)
    if not stages or any(not name or not args for name, args in stages):
        raise UserError("give --stage NAME CONFIG [overrides] for each stage")
    return stages


def main(argv: list[str]) -> int:
    upstream: dict[str, str] = {}
    if argv[:1] == ["--after-job"] and len(argv) > 1:
        upstream["/"] = f"job {argv[1]} (--after)"
        argv = argv[2:]
    failed = 0
    for stage, stage_argv in split_stages(argv):
        check = Preflight(f"{stage}: {stage_argv[1]}", upstream=dict(upstream), served_by_job=stage == "data")
        try:
            output_dir = check_stage(stage, stage_argv, check)
        except Exception as error:
            # A config that does not parse (bad YAML, unknown key, bad value, missing file) is this stage's problem,
            # reported with its file; the other stages are still checked. Anything else is a bug.
            if not (is_user_error(error) or isinstance(error, ValueError | TypeError)):
                raise
            check.add("fail", "config", one_line(error))
            output_dir = None
        print(check.report(), flush=True)
        failed += len(check.failures())
        if output_dir:
            upstream[output_dir] = f"the {stage} job of this chain"
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(run_command(main, COMMAND))
