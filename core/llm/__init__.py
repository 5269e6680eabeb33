"""One LLM interface for every role (classifier, expander, generator, judge) and every eval judge.

    llm = build_llm(LLMConfig(backend="transformers", model="Qwen/Qwen3-8B"), cache_dir="runs/x/llm_cache",
                    role="generator")
    candidates = llm.generate(conversations, Sampling(temperature=0.7, top_p=0.9, seed=0), n=3)
    probabilities = llm.next_token_logprobs(conversations, options=["Yes", "No"])

Backends (chosen per role by config): ``openai`` (any OpenAI-compatible endpoint), ``transformers`` (local weights,
optional PEFT adapter) and ``vllm`` (in-process engine; vLLM's CPU build on CPU machines). The backend modules are
imported only when selected, so importing this package pulls in neither torch nor vllm. ``LLM.close()`` frees the
model when a stage or model is done (a vLLM engine shared by several LLMs stops with the last of them).

Every call goes through the content-addressed ``CallCache`` under this interface: a finished call is written the
moment it finishes, so a crashed or repeated run repeats no finished call and returns identical output.
"""

from collections.abc import Callable
from pathlib import Path

from core.llm.base import (
    Backend,
    Completion,
    GenerationRequest,
    LLMConfig,
    LLMRequestError,
    Sampling,
    candidate_seed,
    check_conversations,
    model_fingerprint,
    sha256_hex,
    share_vllm_engines,
)
from core.llm.cache import CallCache
from core.llm.stats import call_progress, count, llm_progress, llm_stats, stats_since

__all__ = ["LLM", "Completion", "LLMConfig", "LLMRequestError", "Sampling", "build_llm", "call_counts", "llm_progress",
           "llm_stats", "share_vllm_engines", "stats_since"]  # fmt: skip


def _count_stored(role: str, slots: int) -> None:
    """One model call answered ``slots`` identical requests: one new call; the repeats cost nothing, like hits."""
    count(role, "new")
    if slots > 1:
        count(role, "cached", slots - 1)


def call_counts() -> dict[str, dict[str, int]]:
    """{role: {"new": n, "cached": n}} since process start, one per requested candidate / logprob query:
    "new" = answered by a model call, "cached" = answered without one (cache hit, or a repeat within a call).
    ``llm_stats()`` adds retries by cause and failures."""
    return {role: {"new": record["new"], "cached": record["cached"]} for role, record in llm_stats().items()}


class LLM:
    """A backend behind the call cache. Build it with ``build_llm``."""

    def __init__(self, cfg: LLMConfig, backend: Backend, cache: CallCache, role: str):
        self.cfg = cfg
        self.backend = backend
        self.cache = cache
        self.role = role
        self.name = f"{cfg.backend}:{cfg.model}" + (f"+{cfg.adapter}" if cfg.adapter else "")
        # Everything about the model that changes its answers; the API key and base_url are deliberately absent. A
        # local model folder is keyed by its content (model_fingerprint), not its path; a hub id or a served model
        # by its name.
        fingerprint = model_fingerprint(cfg.model)
        self._key_base = {
            "backend": cfg.backend,
            **({"model_sha256": fingerprint} if fingerprint else {"model": cfg.model}),
            "adapter": cfg.adapter,
            "chat_template_kwargs": cfg.chat_template_kwargs,
            **({"chat_template": cfg.chat_template} if cfg.chat_template else {}),  # absent: older entries stay valid
            **backend.key_fields(),
        }
        self._usage = {"calls": 0, "output_tokens": 0}

    def usage(self) -> dict[str, int]:
        """Model calls this LLM made (cache misses) and their output tokens; the openai backend adds the
        server-reported prompt/completion tokens and HTTP requests."""
        return {**self._usage, **getattr(self.backend, "usage", {})}

    def close(self) -> None:
        """Free the backend's model (a vLLM engine stops once no LLM uses it). The LLM is unusable after."""
        close = getattr(self.backend, "close", None)
        if close is not None:
            close()

    def _key(self, **fields) -> str:
        return sha256_hex({**self._key_base, **fields})

    def generate(
        self, conversations: list[list[dict]], sampling: Sampling, n: int = 1, json_schema: dict | None = None
    ) -> list[list[Completion]]:
        """``n`` candidates per conversation. Candidate ``k`` has its own cache entry and seed, so asking for more
        candidates later keeps the first ones, and candidate ``k`` is the same in every run. With ``json_schema``
        every reply is a JSON object of that schema, by the backend's structured output (core/llm/structured.py)."""
        check_conversations(conversations)
        if n < 1:
            raise ValueError(f"generate: n must be >= 1, got {n}")
        results: list[list[Completion | None]] = [[None] * n for _ in conversations]
        pending: dict[str, tuple[GenerationRequest, list[tuple[int, int]]]] = {}
        hits = 0
        schema = {"json_schema": json_schema} if json_schema is not None else {}  # free text keeps its old keys
        for i, conversation in enumerate(conversations):
            for k in range(n):
                fields = {"messages": conversation, "sampling": sampling.cache_fields(), "candidate": k, **schema}
                key = self._key(kind="generate", **fields)
                hit = self.cache.get(key)
                if hit is not None:
                    results[i][k] = Completion(**hit, cached=True)
                    hits += 1
                elif key in pending:  # the same conversation twice in one call: one model call
                    pending[key][1].append((i, k))
                else:
                    seed = candidate_seed(sampling.seed, k)
                    request = GenerationRequest(conversation, sampling, seed, json_schema)
                    pending[key] = (request, [(i, k)])

        def store(key: str, slots: list[tuple[int, int]], completion: Completion) -> None:
            self.cache.put(key, {"text": completion.text, "output_tokens": completion.output_tokens,
                                 "latency_s": completion.latency_s, "wall_s": completion.wall_s})  # fmt: skip
            for i, k in slots:
                results[i][k] = completion
            self._usage["calls"] += 1
            self._usage["output_tokens"] += completion.output_tokens
            return len(slots)

        self._run(pending, hits, len(conversations) * n, self.backend.generate, store, f"{self.role}: generate")
        return results

    def next_token_logprobs(self, conversations: list[list[dict]], options: list[str]) -> list[dict[str, float]]:
        """Log-probability that the assistant reply starts with each option (its first token). Callers renormalise
        over the options. Backends differ in how options outside the model's top tokens are scored: see them."""
        check_conversations(conversations)
        if not options or len(set(options)) != len(options) or not all(isinstance(o, str) and o for o in options):
            raise ValueError(f"next_token_logprobs: options must be distinct non-empty strings, got {options!r}")
        results: list[dict[str, float] | None] = [None] * len(conversations)
        pending: dict[str, tuple[list[dict], list[int]]] = {}
        hits = 0
        for i, conversation in enumerate(conversations):
            key = self._key(kind="next_token_logprobs", messages=conversation, options=options)
            hit = self.cache.get(key)
            if hit is not None:
                results[i] = hit["logprobs"]
                hits += 1
            elif key in pending:
                pending[key][1].append(i)
            else:
                pending[key] = (conversation, [i])

        def store(key: str, slots: list[int], logprobs: dict[str, float]) -> None:
            self.cache.put(key, {"logprobs": logprobs})
            for i in slots:
                results[i] = logprobs
            self._usage["calls"] += 1
            return len(slots)

        def call(items, on_done):
            self.backend.next_token_logprobs(items, options, on_done)

        self._run(pending, hits, len(conversations), call, store, f"{self.role}: logprobs")
        return results

    def _run(self, pending: dict, hits: int, requests: int, call: Callable, store: Callable, description: str) -> None:
        """Run the cache misses through the backend; each result is stored the moment the backend reports it.
        ``store`` returns how many requests the result answered. Progress goes to the stage's bar or this call's."""
        with call_progress(description, requests):
            if hits:
                count(self.role, "cached", hits)
            if not pending:
                return
            keys = list(pending)

            def on_done(index: int, value) -> None:
                key = keys[index]
                _count_stored(self.role, store(key, pending[key][1], value))

            try:
                call([pending[key][0] for key in keys], on_done)
            except LLMRequestError:
                raise  # the backend counted the failure
            except Exception:
                count(self.role, "failures")
                raise


def build_llm(cfg: LLMConfig, cache_dir: str | Path | None, role: str) -> LLM:
    """The LLM for one role. ``cache_dir=None`` memoises in memory only (tests, one-off calls)."""
    cfg.check_complete()
    if cfg.backend == "openai":
        from core.llm.openai_backend import OpenAIBackend

        backend = OpenAIBackend(cfg, role)
    elif cfg.backend == "transformers":
        from core.llm.transformers_backend import TransformersBackend

        backend = TransformersBackend(cfg)
    elif cfg.backend == "vllm":
        from core.llm.vllm_backend import VLLMBackend

        backend = VLLMBackend(cfg)
    else:  # LLMConfig validates; kept for configs built with object.__setattr__ or similar
        raise ValueError(f"unknown backend {cfg.backend!r}")
    return LLM(cfg, backend, CallCache(cache_dir), role)
