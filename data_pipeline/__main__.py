"""Build a CULTURAX dataset: ``python -m data_pipeline --config configs/data/demo.yaml [--key value ...] [--check]``.

The YAML names the stages, sources, per-role LLMs and every stage setting (data_pipeline/config.py); CLI flags
override it (``--seed 7``, ``--output_dir runs/x``, ``--llm.generator.model PATH``). Unknown keys fail. ``--check``
runs only the preflight (data_pipeline/preflight.py); a real run starts with the same checks and stops before stage
1 if one fails, or if another run holds output_dir (core/publish.py).
"""

import json
import sys
from pathlib import Path

from core.cli import Command, config_errors, config_path, pop_flag, run_command

COMMAND = Command(
    name="python -m data_pipeline",
    purpose="Build a CULTURAX dataset (import, classify, expand, dedup, generate, judge, SFT/DPO views) from one YAML.",
    example="python -m data_pipeline --config configs/data/demo.yaml [--seed 7] [--check]",
    config_dir="configs/data",
    check=True,
)


def make_parser():
    from trl import TrlParser

    from data_pipeline.config import PipelineConfig

    return TrlParser(PipelineConfig)


def main(argv: list[str]) -> int:
    import datasets

    from core.publish import output_lock
    from data_pipeline.config import parse_config
    from data_pipeline.pipeline import run_pipeline
    from data_pipeline.preflight import Preflight, check_pipeline

    check_only = pop_flag(argv, "--check")
    with config_errors(config_path(argv)):
        cfg = parse_config(argv)
    preflight = check_pipeline(cfg, Preflight(config_path(argv) or "the command-line config"))
    if check_only:
        print(preflight.report())
        return 2 if preflight.failures() else 0
    preflight.raise_if_failed()
    datasets.disable_progress_bars()  # the stages show their own progress; datasets' internal bars are noise here
    with output_lock(cfg.output_dir):  # the summary reads the build this run published, not a later run's
        stats = run_pipeline(cfg)
        print(summary(cfg.output_dir, stats))
    return 0


def summary(output_dir: str, stats: dict) -> str:
    """The closing lines: the splits as written (after judging), the rows each stage kept and dropped (or added),
    the views and the LLM calls."""
    import datasets

    written = datasets.load_from_disk(str(Path(output_dir) / "dataset"))
    final = ", ".join(f"{name} {len(split)}" for name, split in written.items())
    steps, previous = [], None
    for stage, rows in stats["rows_per_stage"].items():
        change = "" if previous is None else f" ({rows - previous:+d})"
        steps.append(f"{stage} {rows}{change}")
        previous = rows
    lines = [
        f"data_pipeline: wrote {output_dir}",
        f"  final splits (dataset/): {final}",
        f"  rows after each stage (change): {' -> '.join(steps)}",
    ]
    for view, sizes in stats.get("views", {}).items():
        if view != "dataset":
            lines.append(f"  {view}/: " + ", ".join(f"{name} {n}" for name, n in sizes.items()))
    lines.append(f"  llm_calls: {json.dumps(stats['llm_calls'])}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(run_command(main, COMMAND, make_parser))
