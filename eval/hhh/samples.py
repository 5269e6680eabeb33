"""From sampled responses to per-prompt values: responses without a final answer, k samples per prompt, efficiency.

- :func:`judge_answered` sends only responses with a final answer to the judges and fills the others with the
  no-answer outcome documented in eval/hhh/metrics.py (loss, not truthful/informative, ``no_answer`` failure; left out
  of the safety score), so unfinished reasoning is never scored as if it were an answer.
- :func:`collapse_to_prompts` turns per-sample arrays into per-prompt means: metrics average over the samples and
  the paired bootstrap resamples prompts.
- :func:`efficiency_split` and :func:`efficiency_deltas`: thinking, answer and total tokens per response (mean and
  median), latency, the share of responses that reason, and their baseline -> tuned changes with paired CIs.
"""

from collections.abc import Callable

import numpy as np
from datasets import Dataset

from eval import stats
from eval.hhh import metrics

# Per-sample score arrays -> the value a response without a final answer gets (NaN: not scored, counted apart).
NO_ANSWER_SCORES = {"helpfulness": 0.0, "helpfulness_discrete": 0.0, "harmlessness": float("nan"), "truthful": 0.0,
                    "informative": 0.0}  # fmt: skip
PROMPT_ARRAYS = ("helpfulness", "helpfulness_discrete", "harmlessness", "truthful", "informative", "honesty")


def repeat_rows(ds: Dataset, samples_per_prompt: int) -> Dataset:
    """Each row k times in a row (prompt-major), matching the order of generate_responses' records."""
    if samples_per_prompt == 1:
        return ds
    return ds.select([i for i in range(len(ds)) for _ in range(samples_per_prompt)])


def judge_answered(judge_fn: Callable, judges: dict, sets: dict[str, Dataset], responses: dict[str, list]) -> dict:
    """``judge_fn(judges, sets, responses)`` on the responses with a final answer only; per-sample score arrays over
    all responses, the unanswered ones filled with the no-answer outcome."""
    answered = {name: [i for i, r in enumerate(rs) if r["final_answer"]] for name, rs in responses.items()}
    judged = judge_fn(
        judges,
        {name: sets[name].select(rows) for name, rows in answered.items()},
        {name: [responses[name][i] for i in rows] for name, rows in answered.items()},
    )
    sizes = {name: len(rs) for name, rs in responses.items()}

    def scatter(values, set_name: str, fill):
        full = np.full(sizes[set_name], fill, dtype=float)
        full[answered[set_name]] = values
        return full

    scores = {
        "helpfulness": scatter(judged["helpfulness"], "helpfulness", NO_ANSWER_SCORES["helpfulness"]),
        "helpfulness_discrete": scatter(judged["helpfulness_discrete"], "helpfulness", NO_ANSWER_SCORES["helpfulness"]),
        "harmlessness": scatter(judged["harmlessness"], "harmlessness", NO_ANSWER_SCORES["harmlessness"]),
        "truthful": scatter(judged["truthful"], "honesty", NO_ANSWER_SCORES["truthful"]),
        "informative": scatter(judged["informative"], "honesty", NO_ANSWER_SCORES["informative"]),
    }
    scores["honesty"] = metrics.truth_info_scores(scores["truthful"], scores["informative"])
    if "harm_categories" in judged:  # the moderator's per-category flags; an unanswered response's row is NaN
        scores["harm_categories"] = np.full((sizes["harmlessness"], judged["harm_categories"].shape[1]), np.nan)
        scores["harm_categories"][answered["harmlessness"]] = judged["harm_categories"]
    scores["reasons"] = {name: [None] * size for name, size in sizes.items()}  # the judges' reasons, per response
    for name, reasons in judged["reasons"].items():
        for i, reason in zip(answered[name], reasons, strict=True):
            scores["reasons"][name][i] = {metric: text for metric, text in reason.items() if text is not None} or None
    if "cultural" in judged:
        labels: list[str | None] = [metrics.NO_ANSWER] * sizes["culturax"]
        for i, label in zip(answered["culturax"], judged["cultural"], strict=True):
            labels[i] = label
        scores["cultural"] = labels
    return scores


def failed_judgements(sample_scores: dict, responses: dict[str, list[dict]]) -> dict:
    """Judgements that failed (NaN / None) among the responses that were judged; unanswered ones are not failures."""
    answered_harm = np.array([r["final_answer"] for r in responses["harmlessness"]], dtype=bool)
    return {
        "helpfulness": int(np.isnan(sample_scores["helpfulness"]).sum()),
        "harmlessness": int(np.isnan(sample_scores["harmlessness"][answered_harm]).sum()),
        "honesty": int(np.isnan(sample_scores["honesty"]).sum()),
        "cultural": sum(label is None for label in sample_scores.get("cultural", [])),
    }


def collapse_to_prompts(sample_scores: dict, samples_per_prompt: int) -> dict:
    """Per-prompt arrays (mean over each prompt's samples); cultural labels stay per sample, with their per-prompt
    failure shares under "cultural_failure"."""
    scores = {key: stats.prompt_means(sample_scores[key], samples_per_prompt) for key in PROMPT_ARRAYS}
    if "cultural" in sample_scores:
        scores["cultural"] = sample_scores["cultural"]
        scores["cultural_failure"] = metrics.prompt_failure_indicators(sample_scores["cultural"], samples_per_prompt)
    return scores


def no_final_answer_rates(responses: dict[str, list[dict]]) -> dict:
    """% of responses without a final answer, per test set and overall (every prompt has the same k samples, so
    this is also the mean over prompts of each prompt's no-answer share)."""
    rates = {name: stats.mean_percent([not r["final_answer"] for r in rs]) for name, rs in responses.items()}
    rates["overall"] = stats.mean_percent([not r["final_answer"] for rs in responses.values() for r in rs])
    return rates


def efficiency_split(records: list[dict], token_split: str) -> dict:
    """Thinking / answer / total tokens per response (mean and median), median latency, and thinking_share = % of
    responses with a non-empty think block. Added to the efficiency block next to generation_efficiency's keys."""

    def values(key: str) -> np.ndarray:
        return np.array([r[key] for r in records], dtype=float)

    def median(key: str) -> float:
        return float(np.median(values(key))) if records else float("nan")

    def mean(key: str) -> float:
        return float(values(key).mean()) if records else float("nan")

    return {
        "thinking_tokens_per_response": mean("thinking_tokens"),
        "thinking_tokens_median": median("thinking_tokens"),
        "answer_tokens_per_response": mean("answer_tokens"),
        "answer_tokens_median": median("answer_tokens"),
        "output_tokens_median": median("output_tokens"),
        "latency_s_median": median("latency_s"),
        "thinking_share": stats.mean_percent([r["has_thinking"] for r in records]),
        "token_split": token_split,  # "tokenizer": measured with the model's tokenizer; "char_share": estimated
    }


def per_prompt(responses: dict[str, list[dict]], key: str, reduce: Callable = np.mean) -> np.ndarray:
    """One value per prompt over every set, in set order: ``reduce`` over the prompt's samples (a prompt's records
    run from its sample 0 to the next sample 0, so models with different samples_per_prompt still pair by prompt)."""
    out = []
    for records in responses.values():
        groups: list[list[float]] = []
        for record in records:
            if record["sample"] == 0:
                groups.append([])
            groups[-1].append(np.nan if record[key] is None else float(record[key]))
        out.extend(reduce(group) for group in groups)
    return np.array(out, dtype=float)


def efficiency_deltas(base: dict[str, list[dict]], tuned: dict[str, list[dict]], n_resamples: int, seed: int) -> dict:
    """tuned − baseline per-prompt efficiency with paired bootstrap CIs (prompts resampled, each prompt's value the
    mean over its samples; tokens/s is a ratio of per-prompt sums of tokens and wall-time shares)."""
    boot = {"n_resamples": n_resamples, "seed": seed}
    deltas = {}
    for key, field in (
        ("output_tokens_per_response", "output_tokens"),
        ("thinking_tokens_per_response", "thinking_tokens"),
        ("answer_tokens_per_response", "answer_tokens"),
        ("latency_s_per_response", "latency_s"),
    ):
        b, t = per_prompt(base, field), per_prompt(tuned, field)
        deltas[key] = stats.paired_bootstrap_delta(b, t, stats.mean_stat, **boot)
    for key, field in (("thinking_share", "has_thinking"), ("no_final_answer_rate", "final_answer")):
        b, t = per_prompt(base, field), per_prompt(tuned, field)
        if field == "final_answer":
            b, t = 1.0 - b, 1.0 - t
        deltas[key] = stats.paired_bootstrap_delta(b, t, **boot)  # percentage points
    totals = [(per_prompt(m, "output_tokens", np.sum), per_prompt(m, "wall_s", np.sum)) for m in (base, tuned)]
    deltas["tokens_per_s"] = stats.paired_bootstrap_ratio_of_sums(totals[0], totals[1], **boot)
    return deltas


SIDE_BY_SIDE_CULTURAX = 5  # the first CULTURAX test prompts by id shown side by side, then each HHH set's first


def side_by_side(sets: dict[str, Dataset], responses: dict[str, dict[str, list[dict]]]) -> list[dict]:
    """The models' answers to the same prompts, for reading: the first SIDE_BY_SIDE_CULTURAX CULTURAX test prompts by
    id, then the first prompt of each HHH set; per model its first sample's answer (reasoning stripped: what the
    judges saw). ``responses`` is {model: {set: records}}, records prompt-major."""
    chosen = []
    if "culturax" in sets:
        ids = sets["culturax"]["id"]
        chosen += [("culturax", i) for i in sorted(range(len(ids)), key=ids.__getitem__)[:SIDE_BY_SIDE_CULTURAX]]
    chosen += [(name, 0) for name in ("helpfulness", "harmlessness", "honesty") if len(sets.get(name, ()))]
    rows = []
    for name, row in chosen:
        first_sample = {model: next(r for r in per_set[name] if r["id"] == sets[name][row]["id"]) for model, per_set
                        in responses.items()}  # fmt: skip
        rows.append({"set": name, "prompt_id": sets[name][row]["id"], "prompt": sets[name][row]["prompt"],
                     "answers": {model: record["text"] for model, record in first_sample.items()}})  # fmt: skip
    return rows
