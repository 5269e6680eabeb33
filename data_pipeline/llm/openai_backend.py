"""Any OpenAI-compatible chat endpoint (OpenAI, ``vllm serve``, TGI, Ollama) through the official async client.

Retries are the client's own (verified in tests/test_llm_server.py against the local server): timeouts, dropped
connections, 408, 409, 429 and 5xx are retried ``max_retries`` times with exponential backoff (0.5 s doubling, at
most 8 s, minus up to 25 % jitter), and a ``Retry-After`` / ``retry-after-ms`` header up to 60 s replaces the
backoff. Any other 4xx fails at once with ``LLMRequestError``. At most ``max_concurrency`` requests are in flight.

Each candidate is its own request (n=1) with the seed ``candidate_seed(sampling.seed, k)``, so candidate k is
cached and resumed on its own; servers that honour ``seed`` (vLLM, the local server) make it reproducible too.
The API key is read from the environment variable ``api_key_env`` names when the client is made; it is never
logged, never part of a cache key and never written anywhere.

The sync methods hand their batch to one event loop that the backend keeps in a daemon thread, with one client:
its connection pool stays warm from call to call, and callers that already run a loop (Jupyter) work too.
"""

import asyncio
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Coroutine

import openai

from data_pipeline.llm.core import Completion, GenerationRequest, LLMConfig, LLMRequestError

log = logging.getLogger(__name__)
TOP_LOGPROBS = 20  # the most OpenAI's API returns


def option_logprobs(top: list[tuple[str, float]], options: list[str]) -> dict[str, float]:
    """Score options from an API's top-k first tokens (the tokenizer is the server's, not ours).

    A top token matches an option when the token, stripped of surrounding whitespace and case-folded, is a non-empty
    prefix of the option (stripped and case-folded); the longest such tokens count, and their variants (``"Yes"``,
    ``" yes"``, ``"YES"``) are merged by log-sum-exp. An option with no token in the top-k is left out: its logprob
    is unknown (only bounded by the k-th), and imputing one would turn "the judge said something else" into a
    verdict. Callers treat a missing option as below every listed one; with none listed, the judgement fails.
    """
    scores = {}
    for option in options:
        wanted = option.strip().casefold()
        stripped = [(token.strip().casefold(), lp) for token, lp in top]
        matches = [(token, lp) for token, lp in stripped if token and wanted.startswith(token)]
        if not matches:
            continue
        longest = max(len(token) for token, _ in matches)
        best = [lp for token, lp in matches if len(token) == longest]
        top_lp = max(best)
        scores[option] = top_lp + math.log(sum(math.exp(lp - top_lp) for lp in best))
    return scores


class OpenAIBackend:
    def __init__(self, cfg: LLMConfig):
        self.cfg = cfg
        if cfg.api_key_env and not os.environ.get(cfg.api_key_env):
            raise LLMRequestError(f"{cfg.model}: environment variable {cfg.api_key_env} (api_key_env) is not set")
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0, "requests": 0}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_lock = threading.Lock()
        self._client: openai.AsyncOpenAI | None = None  # made and used only on the loop's thread

    def key_fields(self) -> dict:
        return {"top_logprobs": TOP_LOGPROBS}

    def _run(self, coroutine: Coroutine) -> None:
        """Run ``coroutine`` on the backend's loop thread and wait for it; an interrupt here cancels it there."""
        with self._loop_lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                threading.Thread(target=self._loop.run_forever, name="openai-backend", daemon=True).start()
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            future.result()
        except BaseException:
            future.cancel()
            raise

    def _get_client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            # Local servers ignore the key, but the client insists on one.
            api_key = os.environ[self.cfg.api_key_env] if self.cfg.api_key_env else "not-needed"
            self._client = openai.AsyncOpenAI(
                base_url=self.cfg.base_url,
                api_key=api_key,
                max_retries=self.cfg.max_retries,
                timeout=self.cfg.timeout_s,
            )
        return self._client

    def _extra_body(self) -> dict | None:
        # vLLM / SGLang read chat_template_kwargs from the body (e.g. enable_thinking for Qwen3).
        return {"chat_template_kwargs": self.cfg.chat_template_kwargs} if self.cfg.chat_template_kwargs else None

    async def _create(self, client: openai.AsyncOpenAI, **params):
        try:
            response = await client.chat.completions.create(
                model=self.cfg.model, extra_body=self._extra_body(), **params
            )
        except openai.APIStatusError as err:
            retried = err.status_code in (408, 409, 429) or err.status_code >= 500
            raise LLMRequestError(
                f"{self.cfg.model} at {self.cfg.base_url}: HTTP {err.status_code} {type(err).__name__}: {err.message}"
                + (f" (retried up to {self.cfg.max_retries} times)" if retried else "")
            ) from None
        except (openai.APITimeoutError, openai.APIConnectionError) as err:
            raise LLMRequestError(
                f"{self.cfg.model} at {self.cfg.base_url}: {type(err).__name__} after {self.cfg.max_retries} retries"
                f" (timeout {self.cfg.timeout_s} s per attempt)"
            ) from None
        if not response.choices:
            raise LLMRequestError(f"{self.cfg.model} at {self.cfg.base_url}: response without choices")
        if response.usage is not None:
            self.usage["prompt_tokens"] += response.usage.prompt_tokens
            self.usage["completion_tokens"] += response.usage.completion_tokens
        elif not self.usage["requests"]:
            log.warning("%s at %s: responses carry no usage; token counts read 0", self.cfg.model, self.cfg.base_url)
        self.usage["requests"] += 1
        return response

    async def _all(self, items: list, one: Callable) -> None:
        """Run ``one(client, index, item)`` for every item, at most max_concurrency at once; first error wins."""
        semaphore = asyncio.Semaphore(self.cfg.max_concurrency)
        client = self._get_client()

        async def bounded(index, item):
            async with semaphore:
                await one(client, index, item)

        tasks = [asyncio.create_task(bounded(index, item)) for index, item in enumerate(items)]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    def generate(self, requests: list[GenerationRequest], on_done: Callable[[int, Completion], None]) -> None:
        async def one(client, index: int, request: GenerationRequest) -> None:
            start = time.perf_counter()
            response = await self._create(
                client,
                messages=request.messages,
                n=1,
                temperature=request.sampling.temperature,
                top_p=request.sampling.top_p,
                max_tokens=request.sampling.max_new_tokens,  # max_completion_tokens is not accepted by TGI/Ollama
                seed=request.seed,
            )
            choice = response.choices[0]
            tokens = response.usage.completion_tokens if response.usage is not None else 0
            text = choice.message.content or ""
            on_done(index, Completion(text=text, output_tokens=tokens, latency_s=time.perf_counter() - start,
                                      cached=False))  # fmt: skip

        self._run(self._all(requests, one))

    def next_token_logprobs(self, conversations, options, on_done) -> None:
        """From the top-20 first-token logprobs the server returns; see ``option_logprobs`` for the matching."""

        async def one(client, index: int, messages: list[dict]) -> None:
            response = await self._create(
                client, messages=messages, max_tokens=1, temperature=0.0, logprobs=True, top_logprobs=TOP_LOGPROBS
            )
            logprobs = response.choices[0].logprobs
            if logprobs is None or not logprobs.content or not logprobs.content[0].top_logprobs:
                raise LLMRequestError(
                    f"{self.cfg.model} at {self.cfg.base_url}: no top_logprobs in the response; the server must "
                    "support logprobs=True with top_logprobs (vLLM: --max-logprobs >= 20)"
                )
            top = [(entry.token, entry.logprob) for entry in logprobs.content[0].top_logprobs]
            on_done(index, option_logprobs(top, options))

        self._run(self._all(conversations, one))
