"""Types shared by the LLM interface and its backends (no heavy imports: torch/vllm load only in their backends)."""

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from core.chat_templates import PLAIN_PROMPT

BACKENDS = ("openai", "transformers", "vllm")


@dataclass
class LLMConfig:
    """Which model answers a role and how to reach it. Parsed from the ``llm`` blocks of the data/eval YAMLs."""

    backend: str = "transformers"  # "openai" | "transformers" | "vllm"
    model: str = ""  # hub id, local path, or the served model name for "openai"
    adapter: str | None = None  # PEFT adapter dir applied on top of the model (transformers / vllm)
    base_url: str | None = None  # OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 (openai)
    api_key_env: str | None = None  # NAME of the env var that holds the key; the key itself is never stored
    max_concurrency: int = 8  # requests in flight at once (openai)
    timeout_s: float = 120  # per HTTP attempt (openai)
    max_retries: int = 6  # retries on timeouts, dropped connections, 408/409/429/5xx (openai client)
    # A call's total time across all its attempts and backoff (openai): a hung endpoint fails after this, not after
    # (1 + max_retries) * timeout_s (14 min with the defaults).
    deadline_s: float = 300
    batch_size: int = 8  # sequences per forward pass (transformers)
    dtype: str = "auto"  # torch dtype name for local weights ("auto", "bfloat16", "float32", ...)
    chat_template_kwargs: dict = field(default_factory=dict)  # e.g. {"enable_thinking": False} for Qwen3
    # vllm: the largest LoRA rank the model's engine accepts (0 = LoRA off). share_vllm_engines sets it from the
    # adapters, the same for a base model and its adapters, so they share one engine.
    max_lora_rank: int = 0
    # None: the tokenizer's chat template; "none": no template, the prompt as plain text after BOS (base models such
    # as Gemma-7B, whose cards prompt them with raw text; core/chat_templates.py). Local backends only.
    chat_template: str | None = None

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"LLMConfig.backend: {self.backend!r} is not one of {BACKENDS}")
        if self.max_concurrency < 1 or self.batch_size < 1 or self.max_retries < 0 or self.max_lora_rank < 0:
            raise ValueError("LLMConfig: max_concurrency and batch_size must be >= 1, max_retries, max_lora_rank >= 0")
        if self.timeout_s <= 0 or self.deadline_s <= 0:
            raise ValueError(
                f"LLMConfig: timeout_s and deadline_s must be > 0, got {self.timeout_s}, {self.deadline_s}"
            )
        if self.chat_template not in (None, PLAIN_PROMPT):
            raise ValueError(f"LLMConfig.chat_template: {self.chat_template!r}; null (the tokenizer's) or 'none'")
        if self.chat_template == PLAIN_PROMPT and self.backend == "openai":
            raise ValueError("LLMConfig.chat_template 'none' needs a local backend (transformers or vllm): an "
                             "OpenAI-compatible chat endpoint applies the served model's own template")  # fmt: skip

    def check_complete(self) -> None:
        """What a model call needs; checked by build_llm, not at construction (configs may fill fields later)."""
        if not self.model:
            raise ValueError("LLMConfig.model: empty; give a hub id, a local path or a served model name")
        if self.backend == "openai" and not self.base_url:
            raise ValueError("LLMConfig.base_url: required for the openai backend (e.g. http://127.0.0.1:8000/v1)")


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    max_new_tokens: int = 512
    seed: int = 0
    top_k: int = 0  # 0 = off (the Qwen3 cards ask for 20)
    # CTRL's repetition penalty (Keskar et al., 2019), as transformers and vLLM apply it: the logit of every token
    # already in the prompt or the answer is divided by it when positive, multiplied when negative. 1.0 = off.
    repetition_penalty: float = 1.0

    def __post_init__(self):
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.max_new_tokens < 1 or self.top_k < 0:
            raise ValueError(
                f"Sampling: need temperature >= 0, 0 < top_p <= 1, max_new_tokens >= 1, top_k >= 0; got {self}"
            )
        if self.repetition_penalty <= 0:
            raise ValueError(f"Sampling: repetition_penalty must be > 0 (1.0 = off), got {self.repetition_penalty}")

    def cache_fields(self) -> dict:
        """What the call cache keys on: top_k and repetition_penalty only when set, so answers cached before they
        existed stay valid."""
        fields = asdict(self)
        if not self.top_k:
            del fields["top_k"]
        if self.repetition_penalty == 1.0:
            del fields["repetition_penalty"]
        return fields


@dataclass
class Completion:
    text: str
    output_tokens: int
    # Seconds from request to this response, when made (as stored for cached ones): its own request's (openai: the
    # HTTP call; vllm: vLLM's per-request metrics) or, for transformers' static batches, its batch's; None: unknown.
    latency_s: float | None
    cached: bool
    # This response's share of the model calls' wall time: the shares of a call add up to its wall time, so
    # tokens / sum(wall_s) is the throughput of the calls as a whole. None: not measured (older cache entries).
    wall_s: float | None = None


@dataclass(frozen=True)
class GenerationRequest:
    """One candidate to produce: ``seed`` is already specific to the candidate index (see ``candidate_seed``).
    ``json_schema``: the reply must be a JSON object of this schema, enforced by the backend's own structured output
    (core/llm/structured.py); None: free text."""

    messages: list[dict]
    sampling: Sampling
    seed: int
    json_schema: dict | None = None


class LLMRequestError(RuntimeError):
    """A call failed for good: a 4xx other than 408/409/429, retries exhausted, or its deadline passed. The message
    is one line naming the role, the model, the endpoint and the attempts made."""


class Backend(Protocol):
    """What LLM needs from a backend. Results are reported through callbacks as soon as each one is done, so the
    cache holds every finished call even if the process dies in the middle of a batch."""

    def key_fields(self) -> dict: ...

    def generate(self, requests: list[GenerationRequest], on_done: Callable[[int, Completion], None]) -> None: ...

    def next_token_logprobs(
        self, conversations: list[list[dict]], options: list[str], on_done: Callable[[int, dict[str, float]], None]
    ) -> None: ...


def canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def sha256_hex(obj) -> str:
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()


def candidate_seed(seed: int, candidate: int) -> int:
    """The seed sent for candidate ``candidate``: distinct per index, stable across runs, fits a signed int32
    (what OpenAI-compatible servers accept)."""
    return int(sha256_hex({"seed": seed, "candidate": candidate})[:8], 16) & 0x7FFFFFFF


def row_seed(messages: list[dict], seed: int) -> int:
    """A local sampler's RNG seed: a function of the conversation and the candidate's seed only, so a candidate
    comes out the same whatever else shares its batch."""
    return int(sha256_hex({"messages": messages, "seed": seed})[:15], 16)


def adapter_fingerprint(adapter: str | None) -> str | None:
    """sha256 of a local adapter's files, so retraining an adapter in place invalidates its cached answers."""
    if adapter is None or not Path(adapter).is_dir():
        return None
    digest = hashlib.sha256()
    for path in sorted(Path(adapter).glob("adapter_*")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
SAMPLED_BYTES = 1 << 20  # of a weight file, its first and last MiB enter the fingerprint (with its size)


def model_fingerprint(model: str) -> str | None:
    """sha256 identifying a local model folder by content, not path, so that a re-converted or different model at
    the same path never reuses cached answers (and a moved copy still does). Every file of the folder (dot files and
    subfolders aside) enters by name and content, except weight files, which enter by name, size and the sha256 of
    their first and last MiB: cheap for 16 GB of shards, and any other weights differ in their first tensors' bytes
    or in size. None for what is not a local folder (a hub id, a served model name)."""
    folder = Path(model)
    if not folder.is_dir():
        return None
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        digest.update(path.name.encode())
        if path.suffix in WEIGHT_SUFFIXES:
            size = path.stat().st_size
            with open(path, "rb") as handle:
                head = handle.read(SAMPLED_BYTES)
                handle.seek(max(size - SAMPLED_BYTES, 0))
                digest.update(str(size).encode() + head + handle.read(SAMPLED_BYTES))
        else:
            digest.update(path.read_bytes())
    return digest.hexdigest()


VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the max_lora_rank values vLLM accepts (besides 1)


def adapter_rank(adapter: str) -> int:
    """The LoRA rank ``r`` of a PEFT adapter folder (adapter_config.json)."""
    path = Path(adapter) / "adapter_config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: adapter_config.json not found (adapter: a PEFT adapter folder)")
    rank = json.loads(path.read_text(encoding="utf-8")).get("r")
    if not isinstance(rank, int) or rank < 1:
        raise ValueError(f"{path}: field 'r': expected a positive integer, got {rank!r}")
    return rank


def share_vllm_engines(configs: list[LLMConfig]) -> None:
    """Give every vllm config of the same (model, dtype) the same ``max_lora_rank``: the largest of their adapters'
    ranks, rounded up to a value vLLM accepts (0 when none has an adapter), so one engine serves them all."""
    ranks: dict[tuple, int] = {}
    for cfg in configs:
        if cfg.backend == "vllm":
            rank = adapter_rank(cfg.adapter) if cfg.adapter else 0
            ranks[(cfg.model, cfg.dtype)] = max(ranks.get((cfg.model, cfg.dtype), 0), rank)
    for cfg in configs:
        if cfg.backend == "vllm":
            rank = ranks[(cfg.model, cfg.dtype)]
            cfg.max_lora_rank = next((r for r in VLLM_LORA_RANKS if r >= rank), rank) if rank else 0


def first_token_ids(tokenizer, options: list[str]) -> list[int]:
    """First token of each option, tokenised as written (a leading space is part of the option if you give it)."""
    ids = []
    for option in options:
        tokens = tokenizer.encode(option, add_special_tokens=False)
        if not tokens:
            raise ValueError(f"next_token_logprobs: option {option!r} encodes to no token")
        ids.append(tokens[0])
    return ids


def check_conversations(conversations: list[list[dict]]) -> None:
    if not isinstance(conversations, list):
        raise TypeError(f"conversations: expected a list of message lists, got {type(conversations).__name__}")
    for i, conversation in enumerate(conversations):
        if not isinstance(conversation, list) or not conversation:
            raise ValueError(f"conversations[{i}]: expected a non-empty list of {{'role', 'content'}} messages")
        for j, message in enumerate(conversation):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise ValueError(f"conversations[{i}][{j}]: field 'role': missing or not a string")
            if not isinstance(message.get("content"), str):
                raise ValueError(f"conversations[{i}][{j}]: field 'content': missing or not a string")
