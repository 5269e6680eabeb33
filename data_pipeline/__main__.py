"""Build a CULTURAX dataset: ``python -m data_pipeline --config configs/data/demo.yaml [--key value ...]``.

The YAML names the stages, sources, per-role LLMs and every stage setting (data_pipeline/config.py); CLI flags
override it (``--seed 7``, ``--output_dir runs/x``, ``--llm.generator.model PATH``). Unknown keys fail.
"""

import json
import logging
import sys

import datasets

from data_pipeline.config import ConfigError, parse_config
from data_pipeline.importers import InputError
from data_pipeline.pipeline import run_pipeline


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    datasets.disable_progress_bars()  # the stages show their own progress; datasets' internal bars are noise here
    try:
        cfg = parse_config(argv)
        stats = run_pipeline(cfg)
    except (ConfigError, InputError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    splits, calls = json.dumps(stats["split"]), json.dumps(stats["llm_calls"])
    print(f"data_pipeline: wrote {cfg.output_dir} (splits {splits}; llm_calls {calls})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
