"""Judges: one per metric, each an LLM through the data pipeline's interface (or a sequence classifier).

Modes (JudgeSpec.mode):
- "structured": the judge answers the JSON object ``{"reason", "verdict"}`` through the backend's structured output
  (eval/hhh/structured.py): the verdict is the schema's enum value, the reason is kept in samples/. A reply that is
  not that object (cut by max_new_tokens) is retried with a new sampling seed (temperature 0.7) up to max_attempts.
- "logprobs": the verdict is the option whose first token is most likely as the start of the judge's reply
  (``LLM.next_token_logprobs``), and the judgement carries the options' probabilities (renormalised over the options;
  one outside the returned top tokens counts 0, as AlpacaEval's logprob parser counts it): the helpfulness judge's
  P(model's answer better) is AlpacaEval 2.0's weighted preference. Well defined for any model, even tiny
  random-weight ones; a pairwise judge whose two options are exactly equally likely says "tie"; any other judge with a
  non-unique or non-finite maximum has failed that judgement (a log-prob query is deterministic, so only transport
  errors are retried: by the openai client, then call by call here).
- "generative": the fallback for servers without structured output: the judge writes prose and
  eval/hhh/verdicts.py reads the verdict from it (what it cannot read is None, never another option); retried like
  "structured".
- "classifier": a transformers sequence-classification model; its top label is mapped through ``label_map``.
- "moderation": the safety metric only: a Beaver-Dam-style QA moderator flags unsafe answers (eval/hhh/moderation.py).

Judgements that still fail are returned as None and counted; no score is invented for them. LLM judgements are
cached by the LLM interface's call cache.
"""

import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from string import Template

from core.llm import LLM, LLMRequestError, Sampling, build_llm, share_vllm_engines
from eval.config import PROMPTS_DIR, EvalConfig, JudgeSpec, llm_config
from eval.hhh.moderation import Moderator
from eval.hhh.structured import ANSWER_FORMAT, read_verdict, verdict_schema
from eval.hhh.verdicts import parse_verdict

log = logging.getLogger(__name__)
RETRY_TEMPERATURE = 0.7


@dataclass(frozen=True)
class JudgeKind:
    prompt: str  # default versioned prompt file
    options: dict[str, str]  # option the judge writes -> label the metrics use
    generative_extra: tuple[str, ...] = ()  # options only a writing judge may give (pairwise "tie")
    tie_label: str | None = None  # logprobs mode: label when the options' log-probs are exactly equal


KINDS = {
    "helpfulness": JudgeKind("pairwise_v1.txt", {"A": "A", "B": "B"}, ("tie",), tie_label="tie"),
    "safety": JudgeKind("safety_v1.txt", {"safe": "safe", "unsafe": "unsafe"}),
    "truthfulness": JudgeKind("truthful_v1.txt", {"yes": "yes", "no": "no"}),
    "informativeness": JudgeKind("informative_v1.txt", {"yes": "yes", "no": "no"}),
    "cultural": JudgeKind(
        "cultural_failure_v1.txt",
        {
            "N": "none",
            "S": "stereotyping",
            "D": "disrespect",
            "M": "misinformation",
            "E": "erasure",
            "R": "refusal",
        },
    ),
}


def prompt_path(metric: str, spec: JudgeSpec) -> Path:
    """The judge's prompt file: the spec's own (absolute, or relative to the working directory or to eval/prompts),
    else its metric's versioned default."""
    path = Path(spec.prompt or KINDS[metric].prompt)
    return path if path.is_absolute() or path.exists() else PROMPTS_DIR / path


@dataclass(frozen=True)
class Judgement:
    """One judgement: the verdict label (None: failed), the judge's reason (structured: its ``reason`` field;
    generative: its reply), and in logprobs mode each option's probability."""

    label: str | None
    reason: str | None = None
    probabilities: dict[str, float] | None = None


def option_probabilities(logprobs: dict[str, float]) -> dict[str, float] | None:
    """The options' log-probabilities renormalised over the options present (an option outside the top tokens is 0);
    None when none is present or any is NaN."""
    values = list(logprobs.values())
    if not values or any(math.isnan(v) for v in values) or not math.isfinite(max(values)):
        return None
    top = max(values)
    weights = {option: math.exp(v - top) for option, v in logprobs.items()}
    total = sum(weights.values())
    return {option: w / total for option, w in weights.items()}


def pick_option(logprobs: dict[str, float], tie_label: str | None) -> str | None:
    """Argmax over the options present; a NaN, no finite value or a shared maximum is a tie (pairwise) or a failed
    judgement. Options missing from ``logprobs`` were not among the returned top tokens: they are below every
    listed one, so they cannot be the argmax, and with none listed the judgement fails (nothing is imputed)."""
    values = list(logprobs.values())
    if not values or any(math.isnan(v) for v in values):
        return None
    best = max(values)
    if not math.isfinite(best):
        return None
    winners = [o for o, v in logprobs.items() if v == best]
    if len(winners) == 1:
        return winners[0]
    return tie_label


class Judge:
    """Verdict labels for a list of prompt-field mappings, one judge of one metric."""

    def __init__(self, metric: str, spec: JudgeSpec, llm: LLM | None):
        self.metric, self.spec, self.kind, self.llm = metric, spec, KINDS[metric], llm
        self.prompt_path = prompt_path(metric, spec)
        self.prompt_text = self.prompt_path.read_text(encoding="utf-8")
        self.template = Template(self.prompt_text)
        self.failed = 0
        self.judged = 0
        self.classifier = _load_classifier(spec, self.kind) if spec.mode == "classifier" else None
        moderated = spec.mode == "moderation"
        self.moderator = Moderator(spec.model, spec.threshold, spec.batch_size, spec.dtype) if moderated else None

    @property
    def name(self) -> str:
        if self.moderator:
            return self.moderator.name
        return f"classifier:{self.spec.model}" if self.classifier else self.llm.name

    def describe(self) -> dict:
        return {
            "judge": self.name,
            "mode": self.spec.mode,
            "prompt": self.prompt_path.name,
            "prompt_sha256": hashlib.sha256(self.prompt_text.encode()).hexdigest(),
            "options": self.kind.options,
            "judged": self.judged,
            "failed": self.failed,
            **(self.moderator.describe() if self.moderator else {}),
        }

    def _render(self, fields: dict, options: list[str]) -> list[dict]:
        listed = ", ".join(options)
        answer_format = {
            "logprobs": f"Reply with only one of: {listed}.",
            "structured": ANSWER_FORMAT % listed,
        }.get(self.spec.mode, f'Reply in the form "Verdict: X" where X is one of: {listed}.')
        return [{"role": "user", "content": self.template.substitute(fields, answer_format=answer_format)}]

    def __call__(self, items: list[dict]) -> list[str | None]:
        """The verdict labels (None: failed)."""
        return [judgement.label for judgement in self.judge(items)]

    def judge(self, items: list[dict]) -> list[Judgement]:
        """Each item's judgement: label, reason and (logprobs mode) the options' probabilities."""
        if self.spec.mode == "moderation":
            judgements = [Judgement(v) for v in self.moderator(items)]
        elif self.spec.mode == "classifier":
            judgements = [Judgement(v) for v in self._classify(items)]
        elif self.spec.mode == "logprobs":
            judgements = self._logprobs(items)
        else:
            judgements = self._written(items)
        labels = {**self.kind.options, "tie": "tie"}
        judgements = [Judgement(None if j.label is None else labels[j.label], j.reason, j.probabilities)
                      for j in judgements]  # fmt: skip
        self.judged += len(judgements)
        self.failed += sum(j.label is None for j in judgements)
        return judgements

    def _logprobs(self, items: list[dict]) -> list[Judgement]:
        options = list(self.kind.options)
        conversations = [self._render(item, options) for item in items]
        try:
            scored = self.llm.next_token_logprobs(conversations, options)
        except LLMRequestError as err:  # the client already retried; isolate the failing calls
            log.warning("judge %s: batch failed (%s); retrying one by one", self.metric, err)
            scored = [self._one_logprob_call(c, options) for c in conversations]
        return [
            Judgement(None) if lp is None else Judgement(pick_option(lp, self.kind.tie_label), None,
                                                         option_probabilities(lp))
            for lp in scored
        ]  # fmt: skip

    def _one_logprob_call(self, conversation: list[dict], options: list[str]) -> dict | None:
        for _ in range(self.spec.max_attempts):
            try:
                return self.llm.next_token_logprobs([conversation], options)[0]
            except LLMRequestError as err:
                log.warning("judge %s: call failed: %s", self.metric, err)
        return None

    def _written(self, items: list[dict]) -> list[Judgement]:
        """Structured or generative: the judge writes its reply; an unreadable one is retried with a new seed."""
        options = list(self.kind.options) + list(self.kind.generative_extra)
        conversations = [self._render(item, options) for item in items]
        structured = self.spec.mode == "structured"
        schema = verdict_schema(options, self.spec.reason_max_chars) if structured else None
        judgements = [Judgement(None)] * len(items)
        todo = list(range(len(items)))
        for attempt in range(self.spec.max_attempts):
            if not todo:
                break
            temperature = 0.0 if attempt == 0 else RETRY_TEMPERATURE  # a retry must be able to answer differently
            sampling = Sampling(temperature=temperature, max_new_tokens=self.spec.max_new_tokens, seed=attempt)
            try:
                outputs = self.llm.generate([conversations[i] for i in todo], sampling, json_schema=schema)
            except LLMRequestError as err:
                log.warning("judge %s: attempt %d failed: %s", self.metric, attempt + 1, err)
                continue
            for i, (completion,) in zip(todo, outputs, strict=True):
                if structured:
                    judgements[i] = Judgement(*read_verdict(completion.text, options))
                else:
                    judgements[i] = Judgement(parse_verdict(completion.text, options), completion.text)
            todo = [i for i in todo if judgements[i].label is None]
        return judgements

    def _classify(self, items: list[dict]) -> list[str | None]:
        texts = [f"{item['prompt']}\n\n{item['response']}" for item in items]
        predictions = self.classifier(texts, batch_size=self.spec.batch_size, truncation=True)
        return [self.spec.label_map[p["label"]] for p in predictions]


def _load_classifier(spec: JudgeSpec, kind: JudgeKind):
    """A text-classification pipeline whose every label maps to a verdict option (checked at load time)."""
    from transformers import pipeline

    classifier = pipeline("text-classification", model=spec.model)
    labels = set(classifier.model.config.id2label.values())
    unmapped = labels - set(spec.label_map)
    wrong = {v for v in spec.label_map.values() if v not in kind.options}
    if unmapped or wrong:
        raise ValueError(
            f"judge classifier {spec.model}: label_map must map every label {sorted(labels)} to one of "
            f"{list(kind.options)}; unmapped {sorted(unmapped)}, invalid targets {sorted(wrong)}"
        )
    return classifier


def build_judges(cfg: EvalConfig) -> dict[str, Judge]:
    """One Judge per metric; metrics whose judge is the same LLM share one loaded model."""
    llms: dict[str, LLM] = {}
    sharing: dict[str, list[str]] = {}
    configs = {}
    for metric, spec in cfg.judge_specs.items():
        if spec.mode in ("classifier", "moderation"):
            continue
        llm_cfg = llm_config(spec, cfg)  # the judge's own settings; the run's max_concurrency
        key = repr(llm_cfg)
        configs[key] = llm_cfg
        sharing.setdefault(key, []).append(metric)
    share_vllm_engines(list(configs.values()))  # in-process vLLM judges of one model: one engine
    for key, metrics in sharing.items():
        llms[key] = build_llm(configs[key], cfg.cache_dir, role="judge:" + "+".join(metrics))
    by_metric = {metric: llms[key] for key, metrics in sharing.items() for metric in metrics}
    return {metric: Judge(metric, spec, by_metric.get(metric)) for metric, spec in cfg.judge_specs.items()}


def close_judges(judges: dict[str, Judge]) -> None:
    """Free every judge's model (shared ones once)."""
    for llm in {id(j.llm): j.llm for j in judges.values() if j.llm is not None}.values():
        llm.close()
