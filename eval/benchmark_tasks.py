"""Export every benchmark question once for the data pipeline's contamination guard (a .jsonl with a "prompt" per
question, what `eval_prompts` of a data config reads); the tasks themselves are eval/benchmarks/tasks.py.

    python -m eval.benchmark_tasks --config configs/eval/qwen3-8b.yaml --out runs/benchmark_questions.jsonl
"""

import argparse
import json
from pathlib import Path

from eval.benchmarks.tasks import QUESTION_KEY, QUESTION_TEXT, benchmark_tasks, build_task, task_manager
from eval.config import BenchmarksSpec, parse_config


def export_questions(spec: BenchmarksSpec, out: str) -> dict[str, int]:
    """Write each benchmark question once (test and few-shot splits, every language of the run) as {"id", "task",
    "prompt"}; returns counts per lm-eval task."""
    manager = task_manager()
    seen: set[str] = set()
    counts = {}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as handle:
        for item in benchmark_tasks(spec, manager):
            task = build_task(manager, item.config)
            docs = list(task.test_docs()) + (list(task.fewshot_docs()) if task.config.fewshot_split else [])
            counts[item.name] = 0
            for doc in docs:
                text = QUESTION_TEXT[item.benchmark](doc).strip()
                if text in seen:
                    continue
                seen.add(text)
                counts[item.name] += 1
                record = {"id": f"{item.name}/{doc[QUESTION_KEY[item.benchmark]]}", "task": item.name, "prompt": text}
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return counts


def main(argv: list[str] | None = None) -> dict[str, int]:
    parser = argparse.ArgumentParser(description="Export the benchmarks' questions for the contamination guard.")
    parser.add_argument("--config", required=True, help="an eval config with a benchmarks: block")
    parser.add_argument("--out", required=True, help="output .jsonl (list it under eval_prompts of a data config)")
    args = parser.parse_args(argv)
    cfg = parse_config(["--config", args.config])
    if cfg.benchmark_spec is None:
        raise SystemExit(f"{args.config}: no benchmarks: block")
    counts = export_questions(cfg.benchmark_spec, args.out)
    print(f"benchmark questions: wrote {sum(counts.values())} to {args.out} ({counts})")
    return counts


if __name__ == "__main__":
    main()
