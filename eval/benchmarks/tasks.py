"""The benchmark tasks as lm-eval loads them, and their questions exported for the data pipeline.

The tasks are the YAMLs in eval/lm_eval_tasks (the same files `lm_eval --include_path eval/lm_eval_tasks` reads); a
multilingual benchmark's YAML becomes one task per language of the run (eval/benchmarks/languages.py). A config's
`benchmarks.data` can point a task (or one language of it) at a local copy of its hub data (JSON lines, JSON or CSV
with the hub rows' fields): the file is checked here first, so a missing file or a row without a field the task reads
fails with one line naming the task, the file (and line) and the field, before any model is loaded.
The questions are exported for the data pipeline's contamination guard by `python -m eval.benchmark_tasks`.
"""

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from eval.benchmarks.languages import LANGUAGES, lm_task_name, selected_languages
from eval.config import BenchmarksSpec
from eval.lm_eval_tasks.utils import BLEND_INSTRUCTION_CUT, missing_field

TASKS_DIR = Path(__file__).parents[1] / "lm_eval_tasks"
FIXTURES_DIR = Path(__file__).parents[1] / "fixtures" / "benchmarks"
LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv"}
# The field that names a question (paired comparisons match questions by it) and the question's own text.
QUESTION_KEY = {
    "culturalbench_easy": "question_idx",
    "culturalbench_hard": "question_idx",
    "blend_mcq": "MCQID",
    "normad": "ID",
    "global_mmlu_lite": "sample_id",
    "include": "row",  # its row number in the language's split (the hub rows carry no id; utils.process_include)
    "bertaqa": "id",
}
QUESTION_TEXT: dict[str, Callable[[dict], str]] = {
    "culturalbench_easy": lambda doc: doc["prompt_question"],
    "culturalbench_hard": lambda doc: doc["prompt_question"],
    "blend_mcq": lambda doc: doc["prompt"].split(" Without any explanation")[0].split(BLEND_INSTRUCTION_CUT)[0],
    "normad": lambda doc: doc["Story"],
    "global_mmlu_lite": lambda doc: doc["question"],
    "include": lambda doc: doc["question"],
    "bertaqa": lambda doc: doc["question"],
}


class BenchmarkInputError(ValueError):
    """A local benchmark copy that cannot be read as the task needs; the message names task, file and field."""


def task_manager():
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASKS_DIR), include_defaults=False)  # ours only: no scan of ~10k tasks


@dataclass
class BenchmarkTask:
    """One lm-eval task of a run: a benchmark, the language of its variant (None: a single-language benchmark), the
    lm-eval task name (results, samples) and its config as lm-eval receives it."""

    benchmark: str
    language: str | None
    name: str
    config: dict


def benchmark_tasks(spec: BenchmarksSpec, manager=None) -> list[BenchmarkTask]:
    """Every lm-eval task the benchmarks block runs: one per single-language benchmark, one per language of a
    multilingual one (the run's `languages` among its own), each on its hub data or checked local copy."""
    manager = manager or task_manager()
    tasks = []
    for bench in spec.tasks:
        if bench not in LANGUAGES:
            tasks.append(BenchmarkTask(bench, None, bench, task_config(manager, bench, spec.data.get(bench))))
            continue
        for lang in selected_languages(bench, spec.languages):
            local = (spec.data.get(bench) or {}).get(lang)
            tasks.append(
                BenchmarkTask(bench, lang, lm_task_name(bench, lang), task_config(manager, bench, local, lang))
            )
    return tasks


def task_config(manager, task: str, local: str | dict | None, language: str | None = None) -> dict:
    """The task's YAML as lm-eval resolves it (for a language, its variant); with a local copy, its dataset swapped
    for the checked file(s)."""
    from lm_eval.tasks._yaml_loader import load_yaml

    cfg = load_yaml(manager.task_index[task].yaml_path, resolve_func=True)
    where = f"benchmarks.data.{task}"
    if language is not None:
        cfg.update(LANGUAGES[task][language], task=lm_task_name(task, language))
        where += f".{language}"
    if local is None:
        return cfg
    name = cfg["task"]
    files = {cfg["test_split"]: local} if isinstance(local, str) else dict(local)
    splits = {cfg["test_split"], cfg.get("fewshot_split")} - {None}
    if cfg["test_split"] not in files or set(files) - splits:
        raise BenchmarkInputError(
            f"{name}: {where}: give a file, or a mapping of split -> file with split "
            f"'{cfg['test_split']}' (known splits: {sorted(splits)}), got {sorted(files)}"
        )
    formats = {check_local_file(task, path, name, where) for path in files.values()}
    if len(formats) > 1:
        raise BenchmarkInputError(f"{name}: {where}: mixes file formats {sorted(formats)}")
    cfg.update(dataset_path=formats.pop(), dataset_name=None, dataset_kwargs={"data_files": files})
    if cfg.get("fewshot_split") not in files:
        cfg["fewshot_split"] = None  # no local few-shot file: a few-shot run must give one (checked in benchmarks)
    return cfg


def check_local_file(benchmark: str, path: str, name: str | None = None, where: str | None = None) -> str:
    """Every row of a local copy carries every field the benchmark reads; returns the datasets loader name. `name`
    and `where` (the task and the config key, for messages) default to the benchmark's."""
    name, where = name or benchmark, where or f"benchmarks.data.{benchmark}"
    file = Path(path)
    kind = LOCAL_FORMATS.get(file.suffix)
    if kind is None:
        raise BenchmarkInputError(f"{name}: {path}: field '<file>': format must be one of {sorted(LOCAL_FORMATS)}")
    if not file.is_file():
        raise BenchmarkInputError(f"{name}: {path}: field '<file>': file not found ({where})")
    for line, row in _rows(name, file):
        missing = missing_field(benchmark, row)
        if missing is not None:
            raise BenchmarkInputError(f"{name}: {path}:{line}: field '{missing}': missing or empty")
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


def build_task(manager, config: dict):
    """The lm-eval Task object of a task config (downloads or reads its data), for prompts, golds and questions."""
    return manager.load(config)["tasks"][config["task"]]
