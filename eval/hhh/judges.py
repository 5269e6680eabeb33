"""Judges: one per metric, each an LLM through the data pipeline's interface (or a sequence classifier).

Modes (JudgeSpec.mode):
- "logprobs": the verdict is the option whose first token is most likely as the start of the judge's reply
  (``LLM.next_token_logprobs``). Well defined for any model, even tiny random-weight ones; a pairwise judge whose
  two options are exactly equally likely says "tie"; any other judge with a non-unique or non-finite maximum has
  failed that judgement (a log-prob query is deterministic, so only transport errors are retried: by the openai
  client, then call by call here).
- "generative": the judge writes text and the verdict is the option right after "Verdict:" (or at the start of a
  reply without that marker), whatever reason follows it; a verdict position with no option, two options, "N/A", a
  negated or hedged option is unparsable and retried with a new sampling seed (temperature 0.7) up to max_attempts
  (eval/hhh/verdicts.py).
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
from eval.hhh.verdicts import parse_verdict

log = logging.getLogger(__name__)
RETRY_TEMPERATURE = 0.7


@dataclass(frozen=True)
class JudgeKind:
    prompt: str  # default versioned prompt file
    options: dict[str, str]  # option the judge writes -> label the metrics use
    generative_extra: tuple[str, ...] = ()  # options only a generative judge may give (pairwise "tie")
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
        if self.spec.mode == "logprobs":
            answer_format = "Reply with only one of: " + ", ".join(options) + "."
        else:
            answer_format = 'Reply in the form "Verdict: X" where X is one of: ' + ", ".join(options) + "."
        return [{"role": "user", "content": self.template.substitute(fields, answer_format=answer_format)}]

    def __call__(self, items: list[dict]) -> list[str | None]:
        if self.spec.mode == "moderation":
            verdicts = self.moderator(items)
        elif self.spec.mode == "classifier":
            verdicts = self._classify(items)
        elif self.spec.mode == "logprobs":
            verdicts = self._logprobs(items)
        else:
            verdicts = self._generative(items)
        labels = [None if v is None else {**self.kind.options, "tie": "tie"}[v] for v in verdicts]
        self.judged += len(labels)
        self.failed += sum(label is None for label in labels)
        return labels

    def _logprobs(self, items: list[dict]) -> list[str | None]:
        options = list(self.kind.options)
        conversations = [self._render(item, options) for item in items]
        try:
            scored = self.llm.next_token_logprobs(conversations, options)
        except LLMRequestError as err:  # the client already retried; isolate the failing calls
            log.warning("judge %s: batch failed (%s); retrying one by one", self.metric, err)
            scored = [self._one_logprob_call(c, options) for c in conversations]
        return [None if lp is None else pick_option(lp, self.kind.tie_label) for lp in scored]

    def _one_logprob_call(self, conversation: list[dict], options: list[str]) -> dict | None:
        for _ in range(self.spec.max_attempts):
            try:
                return self.llm.next_token_logprobs([conversation], options)[0]
            except LLMRequestError as err:
                log.warning("judge %s: call failed: %s", self.metric, err)
        return None

    def _generative(self, items: list[dict]) -> list[str | None]:
        options = list(self.kind.options) + list(self.kind.generative_extra)
        conversations = [self._render(item, options) for item in items]
        verdicts: list[str | None] = [None] * len(items)
        todo = list(range(len(items)))
        for attempt in range(self.spec.max_attempts):
            if not todo:
                break
            temperature = 0.0 if attempt == 0 else RETRY_TEMPERATURE  # a retry must be able to answer differently
            sampling = Sampling(temperature=temperature, max_new_tokens=self.spec.max_new_tokens, seed=attempt)
            try:
                outputs = self.llm.generate([conversations[i] for i in todo], sampling)
            except LLMRequestError as err:
                log.warning("judge %s: attempt %d failed: %s", self.metric, attempt + 1, err)
                continue
            for i, (completion,) in zip(todo, outputs, strict=True):
                verdicts[i] = parse_verdict(completion.text, options)
            todo = [i for i in todo if verdicts[i] is None]
        return verdicts

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
