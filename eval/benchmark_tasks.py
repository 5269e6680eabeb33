"""The benchmark tasks as lm-eval loads them, and their questions exported for the data pipeline.

The tasks are the YAMLs in eval/lm_eval_tasks (the same files `lm_eval --include_path eval/lm_eval_tasks` reads). A
config's `benchmarks.data` can point a task at a local copy of its hub data (JSON lines, JSON or CSV with the hub
rows' fields): the file is checked here first, so a missing file or a row without a field the task reads fails with
one line naming the task, the file (and line) and the field, before any model is loaded.

Export for the contamination guard (a .jsonl with a "prompt" per question, what `eval_prompts` of a data config reads):
    python -m eval.benchmark_tasks --config configs/eval/qwen3-8b.yaml --out runs/benchmark_questions.jsonl
"""

import argparse
import csv
import json
from collections.abc import Callable
from pathlib import Path

from eval.config import BenchmarksSpec, parse_config
from eval.lm_eval_tasks.utils import BLEND_INSTRUCTION_CUT, missing_field

TASKS_DIR = Path(__file__).parent / "lm_eval_tasks"
FIXTURES_DIR = Path(__file__).parent / "fixtures" / "benchmarks"
LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv"}
# The field that names a question (paired comparisons match questions by it) and the question's own text.
QUESTION_KEY = {
    "culturalbench_easy": "question_idx",
    "culturalbench_hard": "question_idx",
    "blend_mcq": "MCQID",
    "normad": "ID",
    "global_mmlu_lite_en": "sample_id",
}
QUESTION_TEXT: dict[str, Callable[[dict], str]] = {
    "culturalbench_easy": lambda doc: doc["prompt_question"],
    "culturalbench_hard": lambda doc: doc["prompt_question"],
    "blend_mcq": lambda doc: doc["prompt"].split(" Without any explanation")[0].split(BLEND_INSTRUCTION_CUT)[0],
    "normad": lambda doc: doc["Story"],
    "global_mmlu_lite_en": lambda doc: doc["question"],
}


class BenchmarkInputError(ValueError):
    """A local benchmark copy that cannot be read as the task needs; the message names task, file and field."""


def task_manager():
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASKS_DIR), include_defaults=False)  # ours only: no scan of ~10k tasks


def task_config(manager, task: str, local: str | dict | None) -> dict:
    """The task's YAML as lm-eval resolves it; with a local copy, its dataset swapped for the checked file(s)."""
    from lm_eval.tasks._yaml_loader import load_yaml

    cfg = load_yaml(manager.task_index[task].yaml_path, resolve_func=True)
    if local is None:
        return cfg
    files = {cfg["test_split"]: local} if isinstance(local, str) else dict(local)
    splits = {cfg["test_split"], cfg.get("fewshot_split")} - {None}
    if cfg["test_split"] not in files or set(files) - splits:
        raise BenchmarkInputError(
            f"{task}: benchmarks.data.{task}: give a file, or a mapping of split -> file with split "
            f"'{cfg['test_split']}' (known splits: {sorted(splits)}), got {sorted(files)}"
        )
    formats = {check_local_file(task, path) for path in files.values()}
    if len(formats) > 1:
        raise BenchmarkInputError(f"{task}: benchmarks.data.{task}: mixes file formats {sorted(formats)}")
    cfg.update(dataset_path=formats.pop(), dataset_name=None, dataset_kwargs={"data_files": files})
    if cfg.get("fewshot_split") not in files:
        cfg["fewshot_split"] = None  # no local few-shot file: a few-shot run must give one (checked in benchmarks)
    return cfg


def check_local_file(task: str, path: str) -> str:
    """Every row of a local copy carries every field the task reads; returns the datasets loader name."""
    file = Path(path)
    kind = LOCAL_FORMATS.get(file.suffix)
    if kind is None:
        raise BenchmarkInputError(f"{task}: {path}: field '<file>': format must be one of {sorted(LOCAL_FORMATS)}")
    if not file.is_file():
        raise BenchmarkInputError(f"{task}: {path}: field '<file>': file not found (benchmarks.data.{task})")
    for line, row in _rows(task, file):
        name = missing_field(task, row)
        if name is not None:
            raise BenchmarkInputError(f"{task}: {path}:{line}: field '{name}': missing or empty")
    return kind


def _rows(task: str, file: Path):
    if file.suffix == ".csv":
        with open(file, encoding="utf-8", newline="") as handle:
            yield from enumerate(csv.DictReader(handle), start=2)  # line 1 is the header
        return
    text = file.read_text(encoding="utf-8")
    if file.suffix == ".json" and text.lstrip().startswith("["):
        yield from enumerate(json.loads(text), start=1)
        return
    for line, raw in enumerate(text.splitlines(), start=1):
        if raw.strip():
            try:
                yield line, json.loads(raw)
            except json.JSONDecodeError as err:
                raise BenchmarkInputError(f"{task}: {file}:{line}: field '<line>': invalid JSON ({err.msg})") from err


def build_task(manager, task: str, local: str | dict | None):
    """The lm-eval Task object (downloads or reads its data), for prompts, golds and questions."""
    return manager.load(task_config(manager, task, local))["tasks"][task]


def export_questions(spec: BenchmarksSpec, out: str) -> dict[str, int]:
    """Write each benchmark question once (test and few-shot splits) as {"id", "task", "prompt"}; returns counts."""
    manager = task_manager()
    seen: set[str] = set()
    counts = {}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as handle:
        for name in spec.tasks:
            task = build_task(manager, name, spec.data.get(name))
            docs = list(task.test_docs()) + (list(task.fewshot_docs()) if task.config.fewshot_split else [])
            counts[name] = 0
            for doc in docs:
                text = QUESTION_TEXT[name](doc).strip()
                if text in seen:
                    continue
                seen.add(text)
                counts[name] += 1
                record = {"id": f"{name}/{doc[QUESTION_KEY[name]]}", "task": name, "prompt": text}
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
