"""From lm-eval's logged samples to one outcome per question, a task's metrics, and paired changes between models.

A question's outcome is 1.0 when the gold choice has the highest summed log-likelihood (lm-eval's `acc`), else 0.0;
a CulturalBench-Hard question is right when all of its judgements are. Accuracy is in percent with the standard error
of the mean; breakdowns split the same outcomes by the benchmark's own grouping (country, gold label, culturally
sensitive / agnostic, regional feature, local / global topic). A change between two models is paired per question.
"""

import math
import statistics
from collections import defaultdict

import numpy as np

from eval import stats
from eval.benchmarks.tasks import QUESTION_KEY, QUESTION_TEXT
from eval.lm_eval_tasks.utils import bertaqa_group

COUNTRY_FIELD = {"culturalbench_easy": "country", "culturalbench_hard": "country", "blend_mcq": "country"}
COUNTRY_FIELD["normad"] = "Country"
# The label each record carries: what a breakdown splits by and a paired sub-change filters on.
LABEL = {
    "normad": lambda doc: doc["Gold Label"].strip().lower(),
    "global_mmlu_lite": lambda doc: doc["cultural_sensitivity_label"].strip(),
    "include": lambda doc: str(doc["regional_feature"]),
    "bertaqa": bertaqa_group,
}
# Benchmarks whose two halves are compared (label -> breakdown key), and the key of the gap between them.
SPLITS = {
    "global_mmlu_lite": ({"CS": "culturally_sensitive", "CA": "culturally_agnostic"}, "gap_cs_ca"),
    "bertaqa": ({"local": "local", "global": "global"}, "gap_local_global"),
}


def predicted(sample: dict) -> str:
    scores = [ll for ll, _ in sample["filtered_resps"]]
    return sample["arguments"][int(np.argmax(scores))][1].strip()


def question_outcomes(benchmark: str, samples: list[dict]) -> tuple[list[dict], dict]:
    """One record per question {key, correct, text, response, group fields}; plus judgement-level counts (Hard)."""
    if benchmark != "culturalbench_hard":
        return [_record(benchmark, s["doc"], float(s["acc"]), predicted(s)) for s in samples], {}
    judgements: dict = defaultdict(list)
    for s in samples:
        judgements[s["doc"]["question_idx"]].append(s)
    records, incomplete = [], 0
    for group in judgements.values():
        doc = group[0]["doc"]
        if len(group) != doc["n_judgements"]:
            incomplete += 1  # its judgements were not all scored: its question-level outcome is unknown
            continue
        correct = float(all(s["acc"] == 1.0 for s in group))
        records.append(_record(benchmark, doc, correct, " / ".join(predicted(s) for s in group)))
    judged = [float(s["acc"]) for s in samples]
    extra = {"judgement_accuracy": 100.0 * float(np.mean(judged)), "judgement_n": len(judged)}
    return records, extra | {"incomplete_questions": incomplete}


def _record(benchmark: str, doc: dict, correct: float, response: str) -> dict:
    record = {"key": str(doc[QUESTION_KEY[benchmark]]), "correct": correct, "text": QUESTION_TEXT[benchmark](doc)}
    record["response"] = response
    if benchmark in COUNTRY_FIELD:
        record["country"] = str(doc[COUNTRY_FIELD[benchmark]])
    if benchmark in LABEL:
        record["label"] = LABEL[benchmark](doc)
    return record


def accuracy(values: list[float]) -> dict:
    """Accuracy (%) with the standard error of the mean (sample stdev / sqrt(n), lm-eval's `mean_stderr`)."""
    n = len(values)
    acc = 100.0 * sum(values) / n if n else float("nan")
    stderr = 100.0 * statistics.stdev(values) / math.sqrt(n) if n > 1 else float("nan")
    return {"accuracy": acc, "stderr": stderr, "n": n}


def _by(records: list[dict], field: str) -> dict:
    groups: dict = defaultdict(list)
    for r in records:
        groups[r[field]].append(r["correct"])
    return {k: {key: v for key, v in accuracy(vals).items() if key != "stderr"} for k, vals in sorted(groups.items())}


def task_metrics(benchmark: str, records: list[dict], extra: dict, lm_eval_results: dict) -> dict:
    """{"accuracy", "stderr", "n", "breakdown"} of one task (one language of a multilingual one) for one model."""
    out = accuracy([r["correct"] for r in records])
    breakdown: dict = dict(extra)
    if benchmark in COUNTRY_FIELD:
        breakdown["per_country"] = _by(records, "country")
    if benchmark == "normad":
        breakdown["per_label"] = _by(records, "label")
    if benchmark == "include":
        breakdown["per_regional_feature"] = _by(records, "label")
    if benchmark in SPLITS:
        halves, gap = SPLITS[benchmark]
        for label, name in halves.items():
            breakdown[name] = accuracy([r["correct"] for r in records if r["label"] == label])
        first, second = halves.values()
        breakdown[gap] = breakdown[first]["accuracy"] - breakdown[second]["accuracy"]
    breakdown["lm_eval"] = lm_eval_results  # lm-eval's own aggregate (fractions), for cross-checking
    return {**out, "breakdown": breakdown}


def paired_change(base: list[dict], tuned: list[dict], resamples: int, seed: int, label: str | None = None) -> dict:
    """tuned − baseline accuracy over the questions both answered (matched by question id, unique per task: checked
    before the run, eval/benchmarks/sample.py), paired bootstrap 95% CI; `label` keeps that label's questions only."""
    if label is not None:
        base, tuned = [r for r in base if r["label"] == label], [r for r in tuned if r["label"] == label]
    base_by_key = {r["key"]: r["correct"] for r in base}
    tuned_by_key = {r["key"]: r["correct"] for r in tuned}
    keys = list(dict.fromkeys([*base_by_key, *tuned_by_key]))  # every question either answered, in order
    b = np.array([base_by_key.get(k, np.nan) for k in keys], dtype=float)
    t = np.array([tuned_by_key.get(k, np.nan) for k in keys], dtype=float)
    return stats.paired_bootstrap_delta(b, t, n_resamples=resamples, seed=seed)


def change_with_breakdown(benchmark: str, base: list[dict], tuned: list[dict], resamples: int, seed: int) -> dict:
    """The paired change of one task, with the change in each half for a benchmark compared in two halves."""
    change = paired_change(base, tuned, resamples, seed)
    if benchmark in SPLITS:
        halves = SPLITS[benchmark][0]
        change["breakdown"] = {
            name: paired_change(base, tuned, resamples, seed, label) for label, name in halves.items()
        }
    return change
