"""Re-benchmark models: `python -m eval --config configs/eval/<name>.yaml [--flat_field value ...] [--check]`.

Evaluates every model of the config (its own decoding, else its family preset's; base and tuned share it) on the
CULTURAX test split and the HHH sets, judges the responses, and writes results.json, report.md, PNG plots and
samples/ to output_dir (and the same to W&B, whose run files go under output_dir too: eval/report/write.py).
Generations and judgements go through the LLM call cache, so re-running or adding a model repeats no finished call.
``--check`` runs only the preflight (eval/preflight.py); a real run starts with the same checks.
"""

import sys

from core.cli import (
    Command,
    config_errors,
    config_path,
    pop_flag,
    run_command,
)

COMMAND = Command(
    name="python -m eval",
    purpose="Re-benchmark baseline and tuned models (HHH, cultural failures, efficiency, leakage) from one YAML.",
    example="python -m eval --config configs/eval/demo.yaml [--max_new_tokens 32] [--check]",
    config_dir="configs/eval",
    check=True,
)


def make_parser():
    from trl import TrlParser

    from eval.config import EvalConfig

    return TrlParser([EvalConfig])


def parse_and_check(argv: list[str]):
    """(config, preflight) for a command line."""
    from core.preflight import Preflight
    from eval.config import parse_config
    from eval.preflight import check_eval

    with config_errors(config_path(argv)):
        cfg = parse_config(argv)
    return cfg, check_eval(cfg, Preflight(config_path(argv) or "the command-line config"))


def main(argv: list[str] | None = None) -> dict:
    """A real run: the preflight, then every model evaluated and the report written; returns results.json's content."""
    from core.llm import call_counts
    from core.publish import output_lock
    from eval.evaluate import run_eval
    from eval.report.write import write_all

    cfg, preflight = parse_and_check(list(sys.argv[1:] if argv is None else argv))
    preflight.raise_if_failed()
    with output_lock(cfg.output_dir):  # one run per output_dir: a second one stops here, before generating anything
        results = run_eval(cfg)
        out = write_all(results, cfg.output_dir)
    calls = call_counts()
    print(f"eval: wrote {out / 'report.md'}, {out / 'results.json'} and plots; LLM calls by role: {calls}")
    return results


def cli(argv: list[str]) -> int:
    if pop_flag(argv, "--check"):
        _, preflight = parse_and_check(argv)
        print(preflight.report())
        return 2 if preflight.failures() else 0
    main(argv)
    return 0


if __name__ == "__main__":
    sys.exit(run_command(cli, COMMAND, make_parser))
