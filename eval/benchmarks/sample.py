"""Which questions a benchmark run scores, decided once for every model so that their outcomes pair.

Before any model loads, each task's questions are read (the same loaders lm-eval uses) and their ids checked unique:
outcomes are paired by question id, so a repeated id is a one-line error naming the task, the field and the id. With
`benchmarks.limit`, each task (each language of a multilingual one) scores a seeded sample of that many questions,
stratified the way its breakdown is read: by gold label, then country (NormAd), by country (CulturalBench, BLEnD), by
culturally sensitive / agnostic (Global-MMLU-Lite), by regional feature (INCLUDE), by local / global topic (BertaQA).
A stratum gets its share of the sample by largest remainder and its questions at random (core/sampling.py), never
"the first N rows" (NormAd's rows come grouped by label). Parallel languages with the same
ids and labels get the same questions. A CulturalBench-Hard question is sampled whole (all of its judgements).
"""

from collections import Counter, defaultdict
from collections.abc import Callable

from core.sampling import stratified_sample
from eval.benchmarks.tasks import QUESTION_KEY, BenchmarkInputError, BenchmarkTask, build_task
from eval.config import BenchmarksSpec
from eval.lm_eval_tasks.utils import bertaqa_group

STRATA: dict[str, Callable[[dict], tuple]] = {  # outermost stratum first
    "culturalbench_easy": lambda doc: (str(doc["country"]),),
    "culturalbench_hard": lambda doc: (str(doc["country"]),),
    "blend_mcq": lambda doc: (str(doc["country"]),),
    "normad": lambda doc: (doc["Gold Label"].strip().lower(), str(doc["Country"])),
    "global_mmlu_lite": lambda doc: (doc["cultural_sensitivity_label"].strip(),),
    "include": lambda doc: (str(doc["regional_feature"]),),
    "bertaqa": lambda doc: (bertaqa_group(doc),),
}


def limit_of(spec: BenchmarksSpec, benchmark: str) -> int | None:
    """The question budget of one benchmark's tasks: `limit` itself, or its entry when `limit` is per benchmark."""
    return spec.limit.get(benchmark) if isinstance(spec.limit, dict) else spec.limit


def plan_samples(tasks: list[BenchmarkTask], spec: BenchmarksSpec, seed: int, manager) -> dict[str, list[int]]:
    """{lm-eval task: indices of the questions to score} (lm-eval's `samples`) for the tasks a limit cuts; a task
    absent from it scores every question. Raises BenchmarkInputError on a repeated question id."""
    samples = {}
    for item in tasks:
        docs = list(build_task(manager, item.config).eval_docs)
        units = question_units(item, docs)
        limit = limit_of(spec, item.benchmark)
        if limit is not None and limit < len(units):
            strata = {key: STRATA[item.benchmark](docs[rows[0]]) for key, rows in units.items()}
            chosen = stratified_sample(strata, limit, seed)
            samples[item.name] = sorted(row for key in chosen for row in units[key])
    return samples


def question_units(item: BenchmarkTask, docs: list[dict]) -> dict[str, list[int]]:
    """{question id: its rows}, one row per question except CulturalBench-Hard (a question's judgements share its
    question_idx); a repeated id elsewhere is an error, since outcomes are paired by it."""
    field = QUESTION_KEY[item.benchmark]
    units: dict[str, list[int]] = defaultdict(list)
    for index, doc in enumerate(docs):
        units[str(doc[field])].append(index)
    if item.benchmark != "culturalbench_hard":
        repeated = Counter({key: len(rows) for key, rows in units.items() if len(rows) > 1})
        if repeated:
            key, count = repeated.most_common(1)[0]
            raise BenchmarkInputError(
                f"{item.name}: question id {field}={key!r} appears {count} times ({len(repeated)} id(s) repeated); "
                "outcomes are paired by it, so each question needs its own id"
            )
    return dict(units)
