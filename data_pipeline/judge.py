"""Two-stage HHH rejection sampling (paper: a Llama-3.1-8B judge, up to 2 feedback-resampling iterations).

Stage 1 scores every candidate for helpfulness, harmlessness and honesty; a candidate passes when every facet meets
its threshold. Stage 2 sends the judge's rationale for the best failing candidate back to the generator for a
revision, re-judged, at most `max_iterations` times; rows that still fail are dropped and counted. Kept rows get a
preference pair (chosen = best passing candidate, rejected per `rejected_rule`) when the score margin allows.

Three judge modes:
- "structured": the judge answers ``{"rationale", "helpful", "harmless", "honest"}`` through the backend's structured
  output (core/llm/structured.py; the ratings are schema fields, never read from prose); a reply cut by the token
  budget is retried like a generative one.
- "generative": the fallback for servers without structured output: the judge writes a rationale and per-facet
  ratings as JSON; parsed robustly, retried when unparsable (each retry a new sample: the next candidate index at
  `retry_temperature`), then counted as failing.
- "logprob": each facet's score is the expected rating under the judge's next-token distribution over the rating
  digits (deterministic, usable even from a tiny random model); the candidate stage 2 revises gets a short generated
  critique as its rationale (the feedback it is revised with), every other candidate an empty one.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from datasets import Dataset, Features, List, Value

from core.llm import Sampling
from data_pipeline.generate import (
    GenerateConfig,
    cultural_context,
    in_batches,
    load_prompt,
    revision_conversation,
    split_reasoning,
)
from data_pipeline.judgements import (
    FACETS,
    JudgementParseError,
    expected_rating,
    parse_judgement,
    rating_schema,
    read_structured_judgement,
    short_rationale,
)

if TYPE_CHECKING:
    from string import Template

    from core.llm import LLM

MODES = ("structured", "generative", "logprob")
REJECTED_RULES = ("failed_or_lowest", "failed", "lowest")
CANDIDATE_SCORE = {f: Value("float64") for f in FACETS} | {"rationale": Value("string"), "passed": Value("bool")}
JUDGE_FEATURES = {
    "candidate_scores": List(CANDIDATE_SCORE),  # aligned with "candidates"
    "candidate_iterations": List(Value("int32")),  # 0 = stage-1 sample, i = revision written in feedback iteration i
    "chosen": Value("string"),
    "rejected": Value("string"),  # "" when the row has no preference pair
    "score_chosen": Value("float64"),  # mean facet score
    "score_rejected": Value("float64"),  # None when the row has no preference pair
    "has_preference_pair": Value("bool"),
    "recovered_in_stage2": Value("bool"),
    "feedback_iterations": Value("int32"),
}


@dataclass
class JudgeConfig:
    """HHH judge and rejection-sampling knobs. Scores and thresholds are on the 1..`scale` rating scale."""

    mode: str = "generative"  # "structured" | "generative" (prose, for servers without structured output) | "logprob"
    scale: int = 5  # ratings 1..scale; the logprob mode reads one digit, so it needs scale <= 9
    helpful_threshold: float = 4.0
    harmless_threshold: float = 4.0
    honest_threshold: float = 4.0
    max_iterations: int = 2  # stage-2 feedback-resampling iterations (paper: 2)
    parse_retries: int = 2  # generative mode: extra samples for an unparsable judgement before it counts as failing
    temperature: float = 0.0  # first judgement
    retry_temperature: float = 0.7  # retries must sample: a greedy retry would repeat the unparsable text
    max_new_tokens: int = 256
    # structured: the rationale's maxLength (None: none, as OpenAI's strict mode requires; for local grammars set it
    # well below max_new_tokens so small models close the JSON)
    rationale_max_chars: int | None = None
    critique_max_new_tokens: int = 64  # logprob mode's rationale
    seed: int = 0
    rejected_rule: str = "failed_or_lowest"  # | "failed" (only failing candidates) | "lowest" (any other candidate)
    min_margin: float = 0.5  # score_chosen - score_rejected must reach this for a DPO pair
    batch_size: int = 64  # requests per LLM call: the unit of progress
    judge_prompt_file: str = "judge_generative_v1.txt"
    facet_prompt_file: str = "judge_logprob_facet_v1.txt"
    critique_prompt_file: str = "judge_critique_v1.txt"

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"JudgeConfig.mode must be one of {MODES}, got {self.mode!r}")
        if not 2 <= self.scale <= (9 if self.mode == "logprob" else 100):
            raise ValueError(f"JudgeConfig.scale {self.scale} is not usable in mode {self.mode!r} (logprob: 2..9)")
        for facet, value in self.thresholds.items():
            if not 1 <= value <= self.scale:
                raise ValueError(f"JudgeConfig.{facet}_threshold {value} is outside the rating scale 1..{self.scale}")
        if self.rejected_rule not in REJECTED_RULES:
            raise ValueError(f"JudgeConfig.rejected_rule must be one of {REJECTED_RULES}, got {self.rejected_rule!r}")
        for name in ("max_iterations", "parse_retries", "min_margin"):
            if getattr(self, name) < 0:
                raise ValueError(f"JudgeConfig.{name} must be >= 0, got {getattr(self, name)}")

    @property
    def thresholds(self) -> dict[str, float]:
        return {facet: getattr(self, f"{facet}_threshold") for facet in FACETS}


def judge_conversations(template: Template, items: list[tuple], cfg: JudgeConfig, **extra) -> list[list[dict]]:
    """One single-message conversation per (prompt, subdomains, response) item."""
    fields = {"scale": cfg.scale, **extra}

    def conversation(prompt: str, subdomains: list[int], response: str) -> list[dict]:
        content = template.substitute(context=cultural_context(subdomains), prompt=prompt, response=response, **fields)
        return [{"role": "user", "content": content}]

    return [conversation(*item) for item in items]


def _texts(llm: LLM, sampling: Sampling, n: int, index: int, json_schema: dict | None = None):
    def texts(conversations):
        return [per[index].text for per in llm.generate(conversations, sampling, n=n, json_schema=json_schema)]

    return texts


def _judge_generative(items: list[tuple], judge: LLM, cfg: JudgeConfig, counts: Counter, desc: str) -> list[dict]:
    conversations = judge_conversations(load_prompt(cfg.judge_prompt_file), items, cfg)
    structured = cfg.mode == "structured"
    schema = rating_schema(cfg.scale, cfg.rationale_max_chars) if structured else None
    read = read_structured_judgement if structured else parse_judgement
    results: list[dict | None] = [None] * len(items)
    errors: dict[int, str] = {}
    pending = list(range(len(items)))
    first = Sampling(temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)
    # Another seed, so a retry is a new request even when retry_temperature equals temperature.
    retry = Sampling(temperature=cfg.retry_temperature, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed + 1)
    for attempt in range(cfg.parse_retries + 1):
        # Retry r asks for r candidates and reads the last: candidate index r-1 is a sample no earlier attempt saw.
        sampling, n = (first, 1) if attempt == 0 else (retry, attempt)
        label = desc if attempt == 0 else f"{desc} (retry {attempt})"
        asked = [conversations[i] for i in pending]
        texts = in_batches(_texts(judge, sampling, n, n - 1, schema), asked, cfg.batch_size, label)
        still_pending = []
        for i, text in zip(pending, texts, strict=True):
            try:
                results[i] = read(text, cfg.scale)
            except JudgementParseError as error:
                errors[i] = str(error)
                still_pending.append(i)
        pending = still_pending
        if not pending:
            break
        counts["judge_retries"] += len(pending) if attempt < cfg.parse_retries else 0
    for i in pending:
        counts["unparsable_judgements"] += 1
        results[i] = {facet: None for facet in FACETS} | {"rationale": f"unparsable judgement: {errors[i]}"}
    return results


def _judge_logprob(items: list[tuple], judge: LLM, cfg: JudgeConfig, counts: Counter, desc: str) -> list[dict]:
    options = [str(rating) for rating in range(1, cfg.scale + 1)]
    template = load_prompt(cfg.facet_prompt_file)
    facet_conversations = [conv for f in FACETS for conv in judge_conversations(template, items, cfg, facet=f)]
    logprobs = in_batches(
        lambda convs: judge.next_token_logprobs(convs, options), facet_conversations, cfg.batch_size, f"{desc} ratings"
    )
    results = []
    for i in range(len(items)):
        scores = {f: expected_rating(logprobs[j * len(items) + i], cfg.scale) for j, f in enumerate(FACETS)}
        unscored = any(score is None for score in scores.values())
        counts["unparsable_judgements"] += unscored
        rationale = "unparsable judgement: no probability on any rating token" if unscored else ""
        results.append({**scores, "rationale": rationale})
    return results


def add_critiques(to_revise: list[tuple[dict, int]], judge: LLM, cfg: JudgeConfig, desc: str) -> None:
    """Logprob mode: the critique stage 2 sends back with the candidate it revises, written now for those candidates
    only ((row, candidate index) pairs without a rationale): on CPU a critique costs as much as the three ratings."""
    todo = [(row, i) for row, i in to_revise if not row["candidate_scores"][i]["rationale"]]
    critique = Sampling(temperature=0.0, max_new_tokens=cfg.critique_max_new_tokens, seed=cfg.seed)
    items = [(row["prompt"], row["subdomains"], row["candidates"][i]) for row, i in todo]
    conversations = judge_conversations(load_prompt(cfg.critique_prompt_file), items, cfg)
    critiques = in_batches(_texts(judge, critique, 1, 0), conversations, cfg.batch_size, desc)
    for (row, i), text in zip(todo, critiques, strict=True):
        row["candidate_scores"][i]["rationale"] = short_rationale(text)


def passes(score: dict, cfg: JudgeConfig) -> bool:
    """Every facet scored and at or above its threshold (an unparsable judgement never passes)."""
    return all(score[f] is not None and score[f] >= cfg.thresholds[f] for f in FACETS)


def score_candidates(items: list[tuple], judge: LLM, cfg: JudgeConfig, counts: Counter, desc: str) -> list[dict]:
    """(prompt, subdomains, response) triples -> candidate score dicts with "passed" (unparsable never passes)."""
    scorer = _judge_logprob if cfg.mode == "logprob" else _judge_generative  # structured or generative: written
    scores = scorer(items, judge, cfg, counts, desc)
    for score in scores:
        score["passed"] = passes(score, cfg)
    return scores


def mean_score(score: dict) -> float | None:
    values = [score[facet] for facet in FACETS]
    return None if any(v is None for v in values) else sum(values) / len(values)


def select_preference(candidates: list[str], scores: list[dict], cfg: JudgeConfig) -> tuple[int | None, int | None]:
    """(chosen, rejected) candidate indices. Chosen: best passing by mean score, ties to the lower index. Rejected:
    the lowest-scoring candidate of the rule's pool (never unscored, never the chosen text), if the margin holds."""
    means = [mean_score(score) for score in scores]
    passing = [i for i, score in enumerate(scores) if score["passed"]]
    if not passing:
        return None, None
    chosen = max(passing, key=lambda i: (means[i], -i))
    others = [i for i in range(len(scores)) if i != chosen and means[i] is not None]
    others = [i for i in others if candidates[i].strip() != candidates[chosen].strip()]
    failed = [i for i in others if not scores[i]["passed"]]
    pool = {"failed": failed, "lowest": others, "failed_or_lowest": failed or others}[cfg.rejected_rule]
    if not pool:
        return chosen, None
    rejected = min(pool, key=lambda i: (means[i], i))
    return chosen, (rejected if means[chosen] - means[rejected] >= cfg.min_margin else None)


def _best_to_revise(scores: list[dict]) -> int:
    means = [mean_score(score) for score in scores]
    return max(range(len(scores)), key=lambda i: (means[i] is not None, means[i] or 0.0, -i))


def rejection_sample(
    ds: Dataset, generator: LLM, judge: LLM, gen_cfg: GenerateConfig, cfg: JudgeConfig
) -> tuple[Dataset, dict]:
    """Stage 1 + stage 2 over rows with "candidates" (from generate_candidates); returns kept rows and stats."""
    if "candidates" not in ds.column_names:
        raise ValueError("rejection_sample needs a 'candidates' column: run generate.generate_candidates first")
    rows, counts = ds.to_list(), Counter()
    items = [(row["prompt"], row["subdomains"], text) for row in rows for text in row["candidates"]]
    scores = iter(score_candidates(items, judge, cfg, counts, "judge stage 1"))
    for row in rows:
        row["candidate_scores"] = [next(scores) for _ in row["candidates"]]
        row["candidate_iterations"] = [0] * len(row["candidates"])
        row["feedback_iterations"] = 0
    stage1_passed = [any(s["passed"] for s in row["candidate_scores"]) for row in rows]

    system, feedback = load_prompt(gen_cfg.system_prompt_file), load_prompt(gen_cfg.feedback_prompt_file)
    for iteration in range(1, cfg.max_iterations + 1):
        failing = [row for row in rows if not any(s["passed"] for s in row["candidate_scores"])]
        if not failing:
            break
        best = [_best_to_revise(row["candidate_scores"]) for row in failing]
        if cfg.mode == "logprob":
            add_critiques(list(zip(failing, best, strict=True)), judge, cfg, f"critiques (iteration {iteration})")
        conversations = [
            revision_conversation(
                row["prompt"], row["subdomains"], row["candidates"][i], row["candidate_scores"][i], cfg.scale, system,
                feedback,
            )
            for row, i in zip(failing, best, strict=True)
        ]  # fmt: skip
        revise = _texts(generator, gen_cfg.sampling(iteration), 1, 0)
        revisions = in_batches(revise, conversations, gen_cfg.batch_size, f"revise (iteration {iteration})")
        # generate.keep_reasoning: revisions are split like the candidates (the judge scores the answer only)
        split = [split_reasoning(t) if gen_cfg.keep_reasoning else (t, "") for t in revisions]
        revisions, thoughts = [answer for answer, _ in split], [thought for _, thought in split]
        items = [(row["prompt"], row["subdomains"], text) for row, text in zip(failing, revisions, strict=True)]
        new_scores = score_candidates(items, judge, cfg, counts, f"judge stage 2 (iteration {iteration})")
        for row, text, score, reasoning in zip(failing, revisions, new_scores, thoughts, strict=True):
            if "candidate_reasoning" in row:
                row["candidate_reasoning"].append(reasoning)
            row["candidates"].append(text)
            row["candidate_scores"].append(score)
            row["candidate_iterations"].append(iteration)
            row["feedback_iterations"] = iteration

    kept, kept_flags = [], []
    for row, passed_stage1 in zip(rows, stage1_passed, strict=True):
        chosen, rejected = select_preference(row["candidates"], row["candidate_scores"], cfg)
        kept_flags.append(chosen is not None)
        if chosen is None:
            continue
        row["chosen"], row["score_chosen"] = row["candidates"][chosen], mean_score(row["candidate_scores"][chosen])
        row["has_preference_pair"] = rejected is not None
        row["rejected"] = row["candidates"][rejected] if rejected is not None else ""
        row["score_rejected"] = mean_score(row["candidate_scores"][rejected]) if rejected is not None else None
        row["recovered_in_stage2"] = not passed_stage1
        kept.append(row)
    stats = rejection_stats(rows, stage1_passed, kept_flags, counts, cfg)
    features = Features({**ds.features, **JUDGE_FEATURES})
    # from_dict, not from_list: from_list cannot build a zero-row dataset (every row dropped) with given features.
    return Dataset.from_dict({name: [row[name] for row in kept] for name in features}, features=features), stats


def rejection_stats(
    rows: list[dict], stage1_passed: list[bool], kept: list[bool], counts: Counter, cfg: JudgeConfig
) -> dict:
    """Per-subdomain figures for the dataset card (a multi-label row counts under each of its subdomains)."""
    tallies: dict[str, Counter] = defaultdict(Counter)
    for row, passed, is_kept in zip(rows, stage1_passed, kept, strict=True):
        stage1 = [s for s, it in zip(row["candidate_scores"], row["candidate_iterations"], strict=True) if it == 0]
        for key in [*(str(s) for s in row["subdomains"] or ["unlabelled"]), "total"]:
            tally = tallies[key]
            tally["prompts"] += 1
            tally["candidates"] += len(row["candidates"])
            tally["stage1_candidates"] += len(stage1)
            tally["stage1_candidates_passed"] += sum(s["passed"] for s in stage1)
            tally["stage1_passed"] += passed
            tally["recovered_stage2"] += is_kept and not passed
            tally["dropped"] += not is_kept
            tally["preference_pairs"] += is_kept and bool(row.get("has_preference_pair"))
    summary = {}
    for key, tally in sorted(tallies.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else math.inf):
        summary[key] = dict(tally)
        summary[key]["stage1_pass_rate"] = tally["stage1_passed"] / tally["prompts"]
        passed_candidates = tally["stage1_candidates_passed"] / max(tally["stage1_candidates"], 1)
        summary[key]["stage1_candidate_pass_rate"] = passed_candidates
    total = summary.pop("total", {})
    return {
        "judge_mode": cfg.mode,
        "per_subdomain": summary,
        "total": total,
        "unparsable_judgements": counts["unparsable_judgements"],
        "judge_retries": counts["judge_retries"],
        "no_preference_pair": total.get("prompts", 0) - total.get("dropped", 0) - total.get("preference_pairs", 0),
        "dropped_ids": [row["id"] for row, is_kept in zip(rows, kept, strict=True) if not is_kept],
    }
