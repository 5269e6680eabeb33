"""The in-process vLLM engine, for GPU machines (``pip install -r requirements-gpu.txt``).

UNTESTED HERE: vllm needs a CUDA GPU and is not installed on the CPU machines the test suite runs on; no test
imports this module. It is imported only when a config selects ``backend: vllm``. The code follows vLLM's stable
offline API: ``LLM(model)``, ``LLM.generate`` on token-id prompts, ``SamplingParams(n, seed, prompt_logprobs)``
and ``LoRARequest`` for a PEFT adapter.

The chat template is applied with the model's own Hugging Face tokenizer (the same call, with the same
``chat_template_kwargs``, as the transformers backend), so both backends see identical prompts. Each candidate is
its own request with ``seed=candidate_seed(sampling.seed, k)``: vLLM seeds per request, so candidate k is
reproducible and cached on its own. ``next_token_logprobs`` is exact for every option: the option's first token
is appended to the prompt and vLLM returns that token's prompt logprob (prefix caching shares the prompt work).
"""

import time
from collections.abc import Callable

from core.chat_templates import chat_prompt
from core.llm.base import (
    Completion,
    GenerationRequest,
    LLMConfig,
    adapter_fingerprint,
    first_token_ids,
)

MAX_LORA_RANK = 64  # adapters trained by train.sft / train.dpo use r <= 64


class VLLMBackend:
    def __init__(self, cfg: LLMConfig):
        try:
            import vllm
            from vllm.lora.request import LoRARequest
        except ImportError as err:
            raise ImportError(
                "backend 'vllm' needs the vllm package (GPU machines): pip install -r requirements-gpu.txt"
            ) from err
        self.cfg = cfg
        self._vllm = vllm
        self.engine = vllm.LLM(
            model=cfg.model,
            dtype=cfg.dtype,
            enable_lora=cfg.adapter is not None,
            max_lora_rank=MAX_LORA_RANK,
            enable_prefix_caching=True,
        )
        self.tokenizer = self.engine.get_tokenizer()
        self.lora_request = LoRARequest("adapter", 1, cfg.adapter) if cfg.adapter else None

    def key_fields(self) -> dict:
        return {"adapter_sha256": adapter_fingerprint(self.cfg.adapter)}

    def _prompt_ids(self, messages: list[dict]) -> list[int]:
        text = chat_prompt(self.tokenizer, messages, self.cfg.chat_template_kwargs)
        return self.tokenizer.encode(text, add_special_tokens=False)

    def _run(self, prompts: list[list[int]], params: list) -> list:
        token_prompts = [{"prompt_token_ids": ids} for ids in prompts]
        return self.engine.generate(token_prompts, params, lora_request=self.lora_request, use_tqdm=True)

    def generate(self, requests: list[GenerationRequest], on_done: Callable[[int, Completion], None]) -> None:
        """One engine call for the whole list (vLLM schedules it continuously); results stored as a block, so
        very long lists are cut into chunks of ``batch_size * 64`` to bound the work lost to a crash."""
        chunk = self.cfg.batch_size * 64
        for start in range(0, len(requests), chunk):
            part = requests[start : start + chunk]
            params = [
                self._vllm.SamplingParams(
                    n=1,
                    temperature=r.sampling.temperature,
                    top_p=r.sampling.top_p,
                    top_k=r.sampling.top_k or -1,  # vLLM: -1 = all tokens
                    max_tokens=r.sampling.max_new_tokens,
                    seed=r.seed,
                )
                for r in part
            ]
            began = time.perf_counter()
            outputs = self._run([self._prompt_ids(r.messages) for r in part], params)
            latency = time.perf_counter() - began
            for offset, output in enumerate(outputs):
                best = output.outputs[0]
                on_done(start + offset, Completion(best.text, len(best.token_ids), latency, cached=False))

    def next_token_logprobs(self, conversations, options, on_done) -> None:
        first_tokens = first_token_ids(self.tokenizer, options)
        prompts, params = [], self._vllm.SamplingParams(max_tokens=1, prompt_logprobs=0)
        for messages in conversations:
            ids = self._prompt_ids(messages)
            prompts.extend(ids + [token] for token in first_tokens)
        outputs = self._run(prompts, [params] * len(prompts))
        for index in range(len(conversations)):
            scores = {}
            for j, (option, token) in enumerate(zip(options, first_tokens, strict=True)):
                last = outputs[index * len(options) + j].prompt_logprobs[-1]
                scores[option] = float(last[token].logprob)
            on_done(index, scores)
