"""Any OpenAI-compatible chat endpoint (OpenAI, ``vllm serve``, TGI, Ollama) through the official async client.

Retries are the client's own (verified in tests/test_llm_server.py against the local server): timeouts, dropped
connections, 408, 409, 429 and 5xx are retried ``max_retries`` times with exponential backoff (0.5 s doubling, at
most 8 s, minus up to 25 % jitter), and a ``Retry-After`` / ``retry-after-ms`` header up to 60 s replaces the
backoff. Any other 4xx fails at once with ``LLMRequestError``. At most ``max_concurrency`` requests are in flight.
The client's HTTP layer is wrapped (``_CountingHttpClient``) only to see each attempt's outcome, so retries are
counted per role and cause (core/llm/stats.py) without a retry loop of our own. Each call has a total
``deadline_s`` across its attempts and backoff; when it passes, the call fails with one line naming the role, the
model, base_url and the attempts made.

The httpx/openai loggers log every request at INFO; they are set to WARNING here unless the application configured
them or asked for DEBUG (``LOGLEVEL=DEBUG``, ``OPENAI_LOG``). Retries show in the progress bar and stats instead.

Each candidate is its own request (n=1) with the seed ``candidate_seed(sampling.seed, k)``, so candidate k is
cached and resumed on its own; servers that honour ``seed`` (vLLM, the local server) make it reproducible too. A
request with a JSON schema sends it as a strict ``response_format`` (core/llm/structured.py).
The API key is read from the environment variable ``api_key_env`` names when the client is made; it is never
logged, never part of a cache key and never written anywhere.

The sync methods hand their batch to one event loop that the backend keeps in a daemon thread, with one client:
its connection pool stays warm from call to call, and callers that already run a loop (Jupyter) work too.
"""

import asyncio
import contextvars
import logging
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field

import httpx2  # the HTTP library of openai's client (its dependency), for its timeout exception
import openai

from core.llm import stats
from core.llm.base import Completion, GenerationRequest, LLMConfig, LLMRequestError
from core.llm.structured import response_format

log = logging.getLogger(__name__)
TOP_LOGPROBS = 20  # the most OpenAI's API returns
REQUEST_LOGGERS = ("httpx", "httpx2", "httpcore", "httpcore2", "openai")


def quiet_request_logs() -> None:
    """One INFO line per HTTP request drowns a run's log (1,415 of 1,441 lines in one pipeline run)."""
    if os.environ.get("LOGLEVEL", "").upper() == "DEBUG":
        return
    for name in REQUEST_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET and not (name == "openai" and os.environ.get("OPENAI_LOG")):
            logger.setLevel(logging.WARNING)


@dataclass
class _Attempts:
    """What one call has tried so far; lives in a context variable of the call's task."""

    made: int = 0
    failed: list[str] = field(default_factory=list)  # the cause of each failed attempt

    def describe(self) -> str:
        causes = ", ".join(f"{cause} x{n}" for cause, n in Counter(self.failed).items())
        return f"{self.made} attempt{'s' if self.made != 1 else ''}" + (f" ({causes})" if causes else "")


_CALL: contextvars.ContextVar[_Attempts] = contextvars.ContextVar("openai_backend_call")


def retry_cause(status: int, headers) -> str | None:
    """The stats cause of a failed HTTP status, or None for a status the client does not retry."""
    if status == 408:
        return "timeout"
    if status == 429:
        return "429"
    if status >= 500:
        return "5xx"
    if status == 409 or headers.get("x-should-retry") == "true":
        return "other"
    return None


class _CountingHttpClient(openai.DefaultAsyncHttpxClient):
    """The openai client's own HTTP client (same defaults), noting each attempt and how it failed. The client calls
    ``send`` once per attempt, so an attempt after a failed one is a retry, counted under the failure's cause."""

    def __init__(self, role: str, **kwargs):
        super().__init__(**kwargs)
        self._role = role

    async def send(self, request, **kwargs):
        attempts = _CALL.get(None)
        if attempts is None:
            return await super().send(request, **kwargs)
        if attempts.made and attempts.failed:
            stats.count_retry(self._role, attempts.failed[-1])
        attempts.made += 1
        try:
            response = await super().send(request, **kwargs)
        except httpx2.TimeoutException:
            attempts.failed.append("timeout")
            raise
        except Exception:
            attempts.failed.append("connection")  # refused, reset, or the body cut off mid-response
            raise
        if response.status_code >= 400:
            attempts.failed.append(
                retry_cause(response.status_code, response.headers) or f"http {response.status_code}"
            )
        return response


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
    def __init__(self, cfg: LLMConfig, role: str = ""):
        self.cfg = cfg
        self.role = role
        self._where = f"{role + ': ' if role else ''}{cfg.model} at {cfg.base_url}"
        if cfg.api_key_env and not os.environ.get(cfg.api_key_env):
            raise LLMRequestError(f"{self._where}: environment variable {cfg.api_key_env} (api_key_env) is not set")
        quiet_request_logs()
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
                http_client=_CountingHttpClient(self.role),
            )
        return self._client

    def _extra_body(self, top_k: int = 0, repetition_penalty: float = 1.0) -> dict | None:
        # vLLM / SGLang read chat_template_kwargs from the body (e.g. enable_thinking for Qwen3); top_k and
        # repetition_penalty are no OpenAI API fields either: vLLM, TGI and the local server read them there (OpenAI
        # itself answers 400 "Unrecognized request argument"; the eval's preflight probes for it).
        extra = {"chat_template_kwargs": self.cfg.chat_template_kwargs} if self.cfg.chat_template_kwargs else {}
        if top_k:
            extra["top_k"] = top_k
        if repetition_penalty != 1.0:
            extra["repetition_penalty"] = repetition_penalty
        return extra or None

    async def _create(self, client: openai.AsyncOpenAI, top_k: int = 0, repetition_penalty: float = 1.0, **params):
        attempts = _Attempts()
        _CALL.set(attempts)  # this task's own context: concurrent calls do not share it
        try:
            async with asyncio.timeout(self.cfg.deadline_s):
                response = await client.chat.completions.create(
                    model=self.cfg.model, extra_body=self._extra_body(top_k, repetition_penalty), **params
                )
        except openai.APIStatusError as err:
            raise self._failed(f"HTTP {err.status_code} {type(err).__name__}: {err.message}", attempts) from None
        except (openai.APITimeoutError, openai.APIConnectionError) as err:
            what = f"{type(err).__name__} (timeout {self.cfg.timeout_s:g} s per attempt)"
            raise self._failed(what, attempts) from None
        except TimeoutError:
            what = f"no answer within the {self.cfg.deadline_s:g} s deadline (deadline_s)"
            raise self._failed(what, attempts, f"timeout {self.cfg.timeout_s:g} s per attempt") from None
        if not response.choices:
            raise self._failed("response without choices", attempts)
        if response.usage is not None:
            self.usage["prompt_tokens"] += response.usage.prompt_tokens
            self.usage["completion_tokens"] += response.usage.completion_tokens
        elif not self.usage["requests"]:
            log.warning("%s: responses carry no usage; token counts read 0", self._where)
        self.usage["requests"] += 1
        return response

    def _failed(self, what: str, attempts: _Attempts, detail: str = "") -> LLMRequestError:
        """The call failed for good: count it and say, on one line, where and what was tried."""
        stats.count(self.role, "failures")
        tried = attempts.describe() + (f", {detail}" if detail else "")
        return LLMRequestError(f"{self._where}: {what}; tried {tried}, max_retries={self.cfg.max_retries}")

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
        """Concurrent requests; each response's wall_s is the time since the call's previous response finished
        (since the call began for the first), so the shares add up to the call's wall time."""
        last_done = [time.perf_counter()]

        async def one(client, index: int, request: GenerationRequest) -> None:
            start = time.perf_counter()
            structured = {"response_format": response_format(request.json_schema)} if request.json_schema else {}
            response = await self._create(
                client,
                messages=request.messages,
                n=1,
                temperature=request.sampling.temperature,
                top_p=request.sampling.top_p,
                top_k=request.sampling.top_k,
                repetition_penalty=request.sampling.repetition_penalty,
                max_tokens=request.sampling.max_new_tokens,  # max_completion_tokens is not accepted by TGI/Ollama
                seed=request.seed,
                **structured,
            )
            choice = response.choices[0]
            tokens = response.usage.completion_tokens if response.usage is not None else 0
            text = choice.message.content or ""
            done = time.perf_counter()
            wall_s, last_done[0] = done - last_done[0], done
            on_done(index, Completion(text, tokens, latency_s=done - start, cached=False, wall_s=wall_s))

        self._run(self._all(requests, one))

    def next_token_logprobs(self, conversations, options, on_done) -> None:
        """From the top-20 first-token logprobs the server returns; see ``option_logprobs`` for the matching."""

        async def one(client, index: int, messages: list[dict]) -> None:
            response = await self._create(
                client, messages=messages, max_tokens=1, temperature=0.0, logprobs=True, top_logprobs=TOP_LOGPROBS
            )
            logprobs = response.choices[0].logprobs
            if logprobs is None or not logprobs.content or not logprobs.content[0].top_logprobs:
                stats.count(self.role, "failures")
                raise LLMRequestError(
                    f"{self._where}: no top_logprobs in the response; the server must support logprobs=True with "
                    "top_logprobs (vLLM: --max-logprobs >= 20)"
                )
            top = [(entry.token, entry.logprob) for entry in logprobs.content[0].top_logprobs]
            on_done(index, option_logprobs(top, options))

        self._run(self._all(conversations, one))
