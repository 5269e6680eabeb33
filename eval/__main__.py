"""Re-benchmark models: `python -m eval --config configs/eval/<name>.yaml [--flat_field value ...]`.

Evaluates every model of the config (its own decoding, else its family preset's; base and tuned share it) on the
CULTURAX test split and the HHH sets, judges the responses, and writes results.json, report.md, PNG plots and
samples/ to output_dir (and the same to W&B).
Generations and judgements go through the LLM call cache, so re-running or adding a model repeats no finished call.
"""

import logging

from data_pipeline.llm import call_counts
from eval.config import parse_config
from eval.evaluate import run_eval
from eval.report import write_all


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(argv)
    results = run_eval(cfg)
    out = write_all(results, cfg.output_dir)
    calls = call_counts()
    logging.getLogger("eval").info("LLM calls (new/cached) by role: %s", calls)
    print(f"eval: wrote {out / 'report.md'}, {out / 'results.json'} and plots; LLM calls by role: {calls}")
    return results


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    main()
