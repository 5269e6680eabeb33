"""Domain expansion: the expander LLM writes new prompts for subdomains below their target.

Each round, every subdomain still below target gets ``per_round`` proposals from one few-shot conversation (examples
drawn from that subdomain's rows, a different draw each round). A proposal is kept only if

1. it parses (one line of reasonable length),
2. the classifier puts it into the intended subdomain (p >= delta),
3. it is not near an evaluation prompt (SimHash within tau, confirmed by the dedup verifier),
4. it is not a near duplicate of anything kept so far (originals, earlier expansions, earlier acceptances this round).

Expansion stops per subdomain at its target and overall at the call budget (``max_calls`` proposals) or after
``max_rounds``. Everything is deterministic given the seed and the LLM call cache, so a rerun reproduces it.
"""

import re
from collections import Counter
from dataclasses import dataclass, field
from string import Template

import numpy as np
from datasets import Dataset, concatenate_datasets
from tqdm.auto import tqdm

from core.llm import LLM, Sampling
from data_pipeline import taxonomy
from data_pipeline.classify import PREDICTED_COLUMN, labels_from_proba
from data_pipeline.dedup import DedupConfig, cross_pairs, fingerprint, verify_pairs
from data_pipeline.generate import load_prompt
from data_pipeline.schema import ORIGIN_EXPANDED, make_row

MIN_PROMPT_CHARS = 15
MAX_PROMPT_CHARS = 600
_LEADING_NOISE = re.compile(r"^\s*(?:(?:[-*•]|\d+[.)]|(?:new )?prompt\s*:)\s*)+", re.IGNORECASE)
_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL)


@dataclass
class ExpandConfig:
    min_per_subdomain: int = 50  # target for every in-scope subdomain unless `targets` names it
    targets: dict = field(default_factory=dict)  # {subdomain id: target}, overrides the minimum
    subdomains: str = "release"  # scope: "release" (the 30 CULTURAX ids) or "all" classifiable ids
    few_shot: int = 3  # examples shown per proposal conversation
    per_round: int = 2  # proposals per subdomain per round (candidates of one conversation)
    max_calls: int = 400  # call budget: total proposals over all subdomains
    max_rounds: int = 20
    temperature: float = 0.9
    top_p: float = 0.95
    max_new_tokens: int = 96
    prompt_file: str = "expand_v1.txt"

    def __post_init__(self):
        if self.subdomains not in ("release", "all"):
            raise ValueError(f"subdomains must be 'release' or 'all', got '{self.subdomains}'")
        self.targets = {int(k): int(v) for k, v in self.targets.items()}
        for sid in self.targets:
            taxonomy.get(sid)  # KeyError naming an unknown id

    def target_by_subdomain(self) -> dict[int, int]:
        scope = sorted(taxonomy.RELEASE_IDS) if self.subdomains == "release" else list(taxonomy.CLASSIFIABLE_IDS)
        targets = {sid: self.min_per_subdomain for sid in scope}
        targets.update(self.targets)
        return targets


def subdomain_counts(subdomain_lists) -> Counter:
    return Counter(sid for labels in subdomain_lists for sid in labels if sid != taxonomy.NONE_ID)


def imbalance_ratio(counts: Counter, scope) -> float | None:
    """max/min count over the in-scope subdomains present (missing ones are reported separately)."""
    present = [counts[sid] for sid in scope if counts[sid] > 0]
    return max(present) / min(present) if present else None


def parse_proposal(text: str) -> str | None:
    """The first non-empty line without list markers or quotes, if it has a plausible prompt length."""
    text = _THINK_BLOCK.sub("", text)
    for line in text.splitlines():
        line = _LEADING_NOISE.sub("", line).strip().strip('"“”').strip()
        if line:
            return line if MIN_PROMPT_CHARS <= len(line) <= MAX_PROMPT_CHARS else None
    return None


class _NearSet:
    """Prompts kept so far, with their fingerprints, for 'is this new text a verified near duplicate?'."""

    def __init__(self, texts: list[str], dedup_cfg: DedupConfig):
        self.texts = list(texts)
        self.fps = fingerprint(self.texts) if self.texts else np.zeros(0, dtype=np.uint64)
        self.cfg = dedup_cfg

    def near(self, candidates: list[str]) -> np.ndarray:
        """Boolean per candidate: a verified near duplicate of a text in the set."""
        hit = np.zeros(len(candidates), dtype=bool)
        if not candidates or not self.texts:
            return hit
        pairs = cross_pairs(fingerprint(candidates), self.fps, self.cfg.tau)
        if len(pairs):
            verified = verify_pairs(candidates, self.texts, pairs, self.cfg)
            hit[pairs[verified, 0]] = True
        return hit

    def add(self, texts: list[str]) -> None:
        if texts:
            self.texts += texts
            self.fps = np.concatenate([self.fps, fingerprint(texts)])


def expand_dataset(
    ds: Dataset,
    expander: LLM,
    classifier,
    delta: float,
    cfg: ExpandConfig,
    dedup_cfg: DedupConfig,
    eval_prompts: list[str],
    seed: int,
) -> tuple[Dataset, dict]:
    """Returns ds plus the accepted expansions (origin "expanded", parents, generator) and the expansion report."""
    template = load_prompt(cfg.prompt_file)
    targets = cfg.target_by_subdomain()
    counts_before = subdomain_counts(ds["subdomains"])
    counts = Counter(counts_before)
    examples_by_subdomain: dict[int, list[tuple[str, str]]] = {}
    for row_id, prompt, labels in zip(ds["id"], ds["prompt"], ds["subdomains"], strict=True):
        for sid in labels:
            examples_by_subdomain.setdefault(sid, []).append((row_id, prompt))
    kept = _NearSet(ds["prompt"], dedup_cfg)
    eval_set = _NearSet(eval_prompts, dedup_cfg)
    sampling = Sampling(temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens, seed=seed)
    rejected = Counter()
    new_rows: list[dict] = []
    calls = 0
    rounds = 0
    accepted_for = Counter()
    progress = tqdm(total=cfg.max_calls, desc="expand (call budget)", unit="call")
    while rounds < cfg.max_rounds:
        deficient = [sid for sid, target in targets.items() if counts[sid] < target]
        affordable = (cfg.max_calls - calls) // cfg.per_round  # conversations the budget still pays for
        if not deficient or affordable < 1:
            break
        deficient = deficient[:affordable]
        conversations, parents = [], []
        for sid in deficient:
            shots = _few_shot(examples_by_subdomain.get(sid, []), cfg.few_shot, seed, sid, rounds)
            parents.append([row_id for row_id, _ in shots])
            conversations.append(_conversation(template, sid, [prompt for _, prompt in shots]))
        replies = expander.generate(conversations, sampling, n=cfg.per_round)
        calls += len(deficient) * cfg.per_round
        progress.update(len(deficient) * cfg.per_round)
        rounds += 1
        # Flatten (subdomain, proposal) and run the cheap checks first, the classifier once for the whole round.
        proposals = [
            (sid, parent_ids, parse_proposal(c.text))
            for sid, parent_ids, candidates in zip(deficient, parents, replies, strict=True)
            for c in candidates
        ]
        rejected["unparsable"] += sum(text is None for _, _, text in proposals)
        proposals = [p for p in proposals if p[2] is not None]
        if not proposals:
            continue
        texts = [text for _, _, text in proposals]
        labels = labels_from_proba(classifier.predict_proba(texts), classifier.label_ids, delta)
        near_eval = eval_set.near(texts)
        for (sid, parent_ids, text), got, is_eval in zip(proposals, labels, near_eval, strict=True):
            if sid not in got:
                rejected["off_subdomain"] += 1
            elif is_eval:
                rejected["near_eval"] += 1
            elif kept.near([text])[0]:  # checked one by one: "kept so far" includes this round's acceptances
                rejected["duplicate"] += 1
            elif counts[sid] >= targets[sid]:
                rejected["target_reached"] += 1
            else:
                accepted_for[sid] += 1
                new_rows.append(_expanded_row(ds, sid, len(new_rows), text, got, parent_ids, expander.name))
                kept.add([text])
                counts.update(got)
    progress.close()
    out = concatenate_datasets([ds, Dataset.from_list(new_rows, features=ds.features)]) if new_rows else ds
    scope = list(targets)
    stats = {
        "expander": expander.name,
        "calls": calls,
        "rounds": rounds,
        "budget": cfg.max_calls,
        "accepted": len(new_rows),
        "rejected": dict(sorted((+rejected).items())),  # unary + drops zero counts
        "accepted_by_subdomain": {str(s): n for s, n in sorted(accepted_for.items())},
        "targets": {str(s): t for s, t in targets.items()},
        "below_target_after": {str(s): targets[s] - counts[s] for s in scope if counts[s] < targets[s]},
        "imbalance_ratio_before": imbalance_ratio(counts_before, scope),
        "imbalance_ratio_after": imbalance_ratio(counts, scope),
        "missing_before": [s for s in scope if counts_before[s] == 0],
        "missing_after": [s for s in scope if counts[s] == 0],
    }
    return out, stats


def _expanded_row(ds: Dataset, sid: int, index: int, text: str, labels, parents, model: str) -> dict:
    row = make_row(
        id=f"expanded-{sid:02d}-{index:05d}",
        prompt=text,
        subdomains=labels,
        source=f"expanded:{model}",
        origin=ORIGIN_EXPANDED,
        parents=parents,
        generator=model,
    )
    if PREDICTED_COLUMN in ds.column_names:  # classified rows carry the classifier's labels
        row[PREDICTED_COLUMN] = labels
    return row


def _few_shot(examples: list[tuple[str, str]], k: int, seed: int, sid: int, round_index: int):
    """A different deterministic draw of up to k examples per (seed, subdomain, round)."""
    if len(examples) <= k:
        return list(examples)
    rng = np.random.default_rng([seed, sid, round_index])
    return [examples[i] for i in sorted(rng.choice(len(examples), size=k, replace=False))]


def _conversation(template: Template, sid: int, examples: list[str]) -> list[dict]:
    sub = taxonomy.get(sid)
    shown = "\n".join(f"- {example}" for example in examples) or "- (none yet: use the description)"
    request = template.substitute(name=sub.name, domain=sub.domain, description=sub.description, examples=shown)
    return [{"role": "user", "content": request}]
