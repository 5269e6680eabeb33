"""The in-process vLLM engine: GPU machines install vLLM's CUDA build (requirements-gpu.txt), CPU machines (CI,
laptops) the same version's CPU build (requirements-cpu.txt); tests/test_vllm*.py run every path here on the CPU
build against the transformers backend.

Engines are shared: a process holds one ``vllm.LLM`` per (model, dtype, LoRA rank), however many roles or eval
models use it, each with its own ``LoRARequest`` (rank: ``LLMConfig.max_lora_rank``, set by ``share_vllm_engines``
so a base model and its adapters agree). An engine stops when the last LLM using it is closed: its EngineCore and
worker processes are shut down and waited for by PID, so the next model's engine never starts beside it.

The chat template is applied with the model's own Hugging Face tokenizer (the same call, with the same
``chat_template_kwargs``, as the transformers backend), so both backends see identical prompts. Each candidate is
its own request, seeded like the transformers backend: ``row_seed(conversation, candidate_seed(seed, k))``, so two
conversations never share sampling noise and candidate k is reproducible and cached on its own. A response's
latency is its own request's, from vLLM's per-request metrics (arrival to last token); its ``wall_s`` is an equal
share of the engine call's wall time, so throughput is the batch's as a whole. A request with a JSON schema gets
vLLM's structured outputs (xgrammar, compact JSON; core/llm/structured.py).

Log-probabilities of given tokens (judges' options, held-out responses) come from vLLM's prompt logprobs, exact
over the whole vocabulary. vLLM skips its prefix cache for requests that ask for prompt logprobs, so their values
do not depend on what ran before (prefix caching stays on for generation). vLLM's CPU build cannot batch prompt
logprobs on an engine with LoRA enabled: its CPU LoRA kernel (``vllm/lora/punica_wrapper/punica_cpu.py``) takes one
adapter index per request, where prompt logprobs pass one row per token, and a batch of two or more requests kills
the engine (``einsum(): subscript b has size 3 ... 7``); a single request broadcasts its index and is exact. On CPU
such an engine therefore gets those requests one at a time (tests/test_vllm.py checks both facts).
"""

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from core.chat_templates import chat_prompt
from core.llm.base import (
    Completion,
    GenerationRequest,
    LLMConfig,
    adapter_fingerprint,
    first_token_ids,
    row_seed,
    share_vllm_engines,
)

SHUTDOWN_WAIT_S = 30  # after vLLM's own shutdown (which force-kills after 5 s), how long to wait for its processes
CPU_KV_CACHE_GIB = "1"  # vLLM's CPU build: KV cache per engine when VLLM_CPU_KVCACHE_SPACE is unset
# JSON-schema requests (core/llm/structured.py): xgrammar, as the transformers backend, writing compact JSON.
STRUCTURED_OUTPUTS = {"backend": "xgrammar", "disable_any_whitespace": True}
log = logging.getLogger(__name__)


@dataclass
class Engine:
    """One ``vllm.LLM`` and who uses it."""

    llm: object
    users: int = 0
    lora_ids: dict[str, int] = field(default_factory=dict)  # adapter path -> vLLM's integer id for it
    one_at_a_time: bool = False  # prompt-logprob requests go singly (batches_prompt_logprobs)


_ENGINES: dict[tuple, Engine] = {}


def engine_key(cfg: LLMConfig) -> tuple:
    return (cfg.model, cfg.dtype, cfg.max_lora_rank)


def open_engines() -> int:
    """Engines alive in this process (tests check the eval never holds two)."""
    return len(_ENGINES)


def stop_all_engines() -> list[tuple]:
    """Shut down every engine still open, whoever holds it; returns their keys (for a caller that must say so)."""
    keys = list(_ENGINES)
    for key in keys:
        stop_engine(_ENGINES.pop(key).llm)
    return keys


def default_cpu_kv_cache() -> None:
    """On vLLM's CPU build, a KV cache of CPU_KV_CACHE_GIB per engine unless VLLM_CPU_KVCACHE_SPACE says otherwise:
    without it vLLM sizes the cache as a share of the machine's memory (``gpu_memory_utilization``, 0.92 of a NUMA
    node's) and refuses to start when that much is not free, as on a laptop that runs anything else. The CUDA build
    is left alone. Engines started after this (ours, lm-eval's) inherit it."""
    from vllm.platforms import current_platform

    if current_platform.is_cpu() and "VLLM_CPU_KVCACHE_SPACE" not in os.environ:
        os.environ["VLLM_CPU_KVCACHE_SPACE"] = CPU_KV_CACHE_GIB
        log.info("vLLM CPU build: KV cache %s GiB per engine (set VLLM_CPU_KVCACHE_SPACE to change)", CPU_KV_CACHE_GIB)


def _start(cfg: LLMConfig) -> Engine:
    import vllm

    default_cpu_kv_cache()
    lora = {"enable_lora": True, "max_lora_rank": cfg.max_lora_rank} if cfg.max_lora_rank else {}
    llm = vllm.LLM(
        model=cfg.model,
        dtype=cfg.dtype,
        enable_prefix_caching=True,
        disable_log_stats=False,  # per-request metrics: each response's own latency
        structured_outputs_config=STRUCTURED_OUTPUTS,
        **lora,
    )
    return Engine(llm, one_at_a_time=not batches_prompt_logprobs(cfg.max_lora_rank > 0))


def engine_processes(llm) -> list:
    """A ``vllm.LLM``'s processes (psutil): its EngineCore processes and everything they started (the workers)."""
    import psutil

    manager = llm.llm_engine.engine_core.resources.engine_manager
    cores = [psutil.Process(p.pid) for p in manager.processes if p.pid is not None]
    return cores + [child for core in cores for child in core.children(recursive=True)]


def stop_engine(llm) -> None:
    """Shut a ``vllm.LLM`` down: vLLM's own shutdown (it force-kills what has not exited after 5 s), then wait for
    every process the engine started to be gone (EngineCore processes reaped, so no zombies stay behind), killing by
    PID what is left. Also for engines made elsewhere (lm-eval's vllm model)."""
    import psutil

    try:
        processes = engine_processes(llm)
    except psutil.NoSuchProcess:  # an engine that died (EngineDeadError) may have lost some already
        processes = []
    llm.llm_engine.engine_core.shutdown()
    _, alive = psutil.wait_procs(processes, timeout=SHUTDOWN_WAIT_S)
    for process in alive:
        process.kill()
    psutil.wait_procs(alive, timeout=SHUTDOWN_WAIT_S)


def batches_prompt_logprobs(lora_enabled: bool) -> bool:
    """Whether an engine can batch prompt-logprob requests: not vLLM's CPU build with LoRA on (see above)."""
    from vllm.platforms import current_platform

    return not (lora_enabled and current_platform.is_cpu())


class VLLMBackend:
    def __init__(self, cfg: LLMConfig):
        try:
            import vllm
        except ImportError as err:
            raise ImportError(
                "backend 'vllm' needs the vllm package: pip install -r requirements-gpu.txt (GPU), or on CPU "
                "`make setup` (vLLM's CPU build, requirements-cpu.txt)"
            ) from err
        if cfg.adapter and not cfg.max_lora_rank:
            share_vllm_engines([cfg])  # an LLM on its own: the engine takes its adapter's rank
        self.cfg = cfg
        self._vllm = vllm
        self.key = engine_key(cfg)
        if self.key not in _ENGINES:
            _ENGINES[self.key] = _start(cfg)
        self._engine = _ENGINES[self.key]
        self._engine.users += 1
        self.engine = self._engine.llm
        self.tokenizer = self.engine.get_tokenizer()
        self.eos_ids = end_of_turn_ids(cfg.model, self.tokenizer)
        self.lora_request = None
        if cfg.adapter:
            from vllm.lora.request import LoRARequest

            lora_id = self._engine.lora_ids.setdefault(cfg.adapter, len(self._engine.lora_ids) + 1)
            self.lora_request = LoRARequest(f"adapter-{lora_id}", lora_id, cfg.adapter)

    def close(self) -> None:
        """Release the engine; the last user shuts it down. Idempotent."""
        if self._engine is None:
            return
        self._engine.users -= 1
        if self._engine.users == 0:
            del _ENGINES[self.key]
            stop_engine(self._engine.llm)
        self._engine, self.engine = None, None

    def key_fields(self) -> dict:
        return {"adapter_sha256": adapter_fingerprint(self.cfg.adapter)}

    def _prompt_ids(self, messages: list[dict]) -> list[int]:
        text = chat_prompt(self.tokenizer, messages, self.cfg.chat_template_kwargs, self.cfg.chat_template)
        return self.tokenizer.encode(text, add_special_tokens=False)

    def _run(self, prompts: list[list[int]], params: list) -> list:
        if self.engine is None:
            raise RuntimeError(f"vllm backend for {self.cfg.model}: used after close()")
        token_prompts = [{"prompt_token_ids": ids} for ids in prompts]
        return self.engine.generate(token_prompts, params, lora_request=self.lora_request, use_tqdm=len(prompts) > 1)

    def generate(self, requests: list[GenerationRequest], on_done: Callable[[int, Completion], None]) -> None:
        """One engine call per chunk (vLLM schedules it continuously); results stored as a block, so very long
        lists are cut into chunks of ``batch_size * 64`` to bound the work lost to a crash."""
        chunk = self.cfg.batch_size * 64
        for start in range(0, len(requests), chunk):
            part = requests[start : start + chunk]
            params = [
                self._vllm.SamplingParams(
                    n=1,
                    temperature=r.sampling.temperature,
                    top_p=r.sampling.top_p,
                    top_k=r.sampling.top_k,  # 0 = off, in vLLM as here
                    repetition_penalty=r.sampling.repetition_penalty,  # 1.0 = off, in vLLM as here
                    max_tokens=r.sampling.max_new_tokens,
                    seed=row_seed(r.messages, r.seed),
                    structured_outputs=self._structured(r.json_schema),
                )
                for r in part
            ]
            began = time.perf_counter()
            outputs = self._run([self._prompt_ids(r.messages) for r in part], params)
            wall_share = (time.perf_counter() - began) / len(part)
            for offset, output in enumerate(outputs):
                best = output.outputs[0]
                completion = Completion(best.text, len(best.token_ids), request_latency(output), False, wall_share)
                on_done(start + offset, completion)

    def _structured(self, schema: dict | None):
        """vLLM's structured-outputs request for a JSON schema (None: free text)."""
        if schema is None:
            return None
        from vllm.sampling_params import StructuredOutputsParams

        return StructuredOutputsParams(json=schema)

    def prompt_logprobs(self, sequences: list[list[int]]) -> list[list[float | None]]:
        """log p(token k | tokens before k) for every token of every sequence (None for the first), exact."""
        params = self._vllm.SamplingParams(max_tokens=1, prompt_logprobs=0)
        if self._engine.one_at_a_time:
            outputs = [self._run([ids], [params])[0] for ids in sequences]
        else:
            outputs = self._run(sequences, [params] * len(sequences))
        return [
            [None] + [float(output.prompt_logprobs[k][ids[k]].logprob) for k in range(1, len(ids))]
            for ids, output in zip(sequences, outputs, strict=True)
        ]

    def next_token_logprobs(self, conversations, options, on_done) -> None:
        """Exact log-probabilities: each option's first token is appended to the prompt and scored as its last
        prompt token. Options sharing a first token get the same value."""
        first_tokens = first_token_ids(self.tokenizer, options)
        sequences = [self._prompt_ids(messages) + [token] for messages in conversations for token in first_tokens]
        scored = self.prompt_logprobs(sequences)
        for index in range(len(conversations)):
            rows = scored[index * len(options) : (index + 1) * len(options)]
            on_done(index, {option: row[-1] for option, row in zip(options, rows, strict=True)})


def end_of_turn_ids(model: str, tokenizer) -> set[int]:
    """The ids that end a reply, read as the transformers backend reads them: the model's generation config
    (its model config when it has none), else the tokenizer's EOS."""
    from transformers import AutoConfig, GenerationConfig

    try:
        eos = GenerationConfig.from_pretrained(model).eos_token_id
    except OSError:
        eos = AutoConfig.from_pretrained(model).eos_token_id
    if eos is None:
        eos = tokenizer.eos_token_id
    return set(eos if isinstance(eos, list) else [eos])


def request_latency(output) -> float | None:
    """Seconds from the request's arrival to its last token, from vLLM's per-request metrics (None without them):
    the time to the first token as vLLM's front end measured it, plus first to last token in the engine."""
    metrics = output.metrics
    if metrics is None or not metrics.first_token_ts:
        return None
    return metrics.first_token_latency + (metrics.last_token_ts - metrics.first_token_ts)
