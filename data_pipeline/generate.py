"""Candidate generation (paper section: K culturally grounded answers per prompt) and feedback revisions.

The generator sees a versioned system prompt that names the row's cultural context (its subdomains and their
descriptions) and asks for a helpful, harmless and honest answer. The same module writes the stage-2 revision
conversation, so everything the generator is asked lives in one place and in files under data_pipeline/prompts/.

A reasoning generator (DeepSeek-R1-Distill, Qwen3 in thinking mode) writes ``<think>...</think>`` before its answer.
With ``keep_reasoning`` the think block is split off: "candidates" hold the answers (what the judge scores and the
views train on) and "candidate_reasoning" the reasoning of each, so a recipe can train "reason, then answer".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, TypeVar

from datasets import Dataset, List, Value
from tqdm.auto import tqdm

from core.llm import Sampling
from data_pipeline import taxonomy

if TYPE_CHECKING:
    from core.llm import LLM

PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class GenerateConfig:
    """Generation knobs; defaults are the paper's (K=3, temperature 0.7, top-p 0.9, 512 new tokens)."""

    k: int = 3
    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 512
    seed: int = 0
    # Prompt files: a bare name is looked up in data_pipeline/prompts/, anything else is a path.
    system_prompt_file: str = "generate_system_v1.txt"
    feedback_prompt_file: str = "feedback_revision_v1.txt"
    # Rows per LLM call: the unit of progress and of crash recovery; the backend batches/parallelises inside it.
    batch_size: int = 64
    # Split a reasoning generator's <think> block off each candidate into "candidate_reasoning" (see module doc).
    keep_reasoning: bool = False

    def __post_init__(self):
        if self.k < 1:
            raise ValueError(f"GenerateConfig.k must be >= 1, got {self.k}")
        if self.batch_size < 1:
            raise ValueError(f"GenerateConfig.batch_size must be >= 1, got {self.batch_size}")

    def sampling(self, iteration: int = 0) -> Sampling:
        # A revision at iteration i uses seed + i so that it is a fresh sample even when its messages repeat.
        seed = self.seed + iteration
        return Sampling(temperature=self.temperature, top_p=self.top_p, max_new_tokens=self.max_new_tokens, seed=seed)


def prompt_path(name: str) -> Path:
    """A bare file name is one of the versioned prompts in data_pipeline/prompts/; anything else is a path."""
    return Path(name) if Path(name).is_absolute() or Path(name).parent != Path(".") else PROMPTS_DIR / name


def load_prompt(name: str) -> Template:
    """A versioned prompt template ($placeholders, so JSON braces in a prompt need no escaping)."""
    path = prompt_path(name)
    if not path.is_file():
        raise FileNotFoundError(f"prompt file not found: {path}")
    return Template(path.read_text(encoding="utf-8").strip())


def cultural_context(subdomain_ids: Sequence[int]) -> str:
    """One line per subdomain: name, UNESCO domain and description, as the generator and judge see them."""
    lines = []
    for subdomain_id in subdomain_ids:
        sub = taxonomy.get(int(subdomain_id))
        domain = f" ({sub.domain})" if sub.domain else ""
        lines.append(f"- {sub.name}{domain}: {sub.description}")
    return "\n".join(lines) if lines else "- unspecified"


def generation_conversation(prompt: str, subdomains: Sequence[int], system: Template) -> list[dict]:
    return [
        {"role": "system", "content": system.substitute(context=cultural_context(subdomains))},
        {"role": "user", "content": prompt},
    ]


def revision_conversation(
    prompt: str,
    subdomains: Sequence[int],
    answer: str,
    score: dict,
    scale: int,
    system: Template,
    feedback: Template,
) -> list[dict]:
    """The generator's earlier answer followed by the judge's ratings and rationale, asking for a revision."""

    def rating(facet: str) -> str:
        return "n/a" if score.get(facet) is None else f"{score[facet]:.1f}"

    # An unparsable judgement's rationale is a parse error, not a critique of the answer.
    rated = any(score.get(facet) is not None for facet in ("helpful", "harmless", "honest"))

    request = feedback.substitute(
        scale=scale,
        helpful=rating("helpful"),
        harmless=rating("harmless"),
        honest=rating("honest"),
        rationale=(score.get("rationale") if rated else "") or "(no critique available)",
    )
    return [
        *generation_conversation(prompt, subdomains, system),
        {"role": "assistant", "content": answer},
        {"role": "user", "content": request},
    ]


def in_batches(call: Callable[[list[T]], list[R]], items: Sequence[T], batch_size: int, desc: str) -> list[R]:
    """Apply `call` to consecutive slices of `items` with a progress bar; results keep the input order."""
    results: list[R] = []
    with tqdm(total=len(items), desc=desc, unit="item", disable=not items) as bar:
        for start in range(0, len(items), batch_size):
            chunk = list(items[start : start + batch_size])
            out = call(chunk)
            if len(out) != len(chunk):
                raise RuntimeError(f"{desc}: backend returned {len(out)} results for {len(chunk)} requests")
            results.extend(out)
            bar.update(len(chunk))
    return results


def split_reasoning(text: str) -> tuple[str, str]:
    """(answer, reasoning) of a generator's text: the answer follows the last ``</think>``; a block that never
    closed leaves no answer (""), which the judge then fails; text without a block is all answer."""
    if "</think>" in text:
        head, answer = text.rsplit("</think>", 1)
        return answer.strip(), head.split("<think>", 1)[-1].strip()
    if "<think>" in text:
        return "", text.split("<think>", 1)[1].strip()
    return text, ""


def generate_candidates(ds: Dataset, llm: LLM, cfg: GenerateConfig) -> Dataset:
    """Adds "candidates": list[str], the K sampled answers of each row (candidate k is stable through the cache)."""
    system = load_prompt(cfg.system_prompt_file)
    conversations = [generation_conversation(p, s, system) for p, s in zip(ds["prompt"], ds["subdomains"], strict=True)]
    sampling = cfg.sampling()
    completions = in_batches(
        lambda convs: llm.generate(convs, sampling, n=cfg.k), conversations, cfg.batch_size, f"generate K={cfg.k}"
    )
    candidates = [[c.text for c in per_row] for per_row in completions]
    for row_id, per_row in zip(ds["id"], candidates, strict=True):
        if len(per_row) != cfg.k:
            raise RuntimeError(f"row {row_id!r}: generator returned {len(per_row)} candidates, expected {cfg.k}")
    ds = ds.remove_columns([c for c in ("candidates", "candidate_reasoning") if c in ds.column_names])
    if cfg.keep_reasoning:
        split = [[split_reasoning(text) for text in per_row] for per_row in candidates]
        candidates = [[answer for answer, _ in per_row] for per_row in split]
        reasoning = [[thought for _, thought in per_row] for per_row in split]
        ds = ds.add_column("candidate_reasoning", reasoning, feature=List(Value("string")))
    return ds.add_column("candidates", candidates, feature=List(Value("string")))
