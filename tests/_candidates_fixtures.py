"""Scripted LLMs for the generate/judge/views tests: the real `LLM` class (call cache included) over a backend
whose replies are computed from each request by a test-supplied function."""

import re
from collections.abc import Callable

from core.llm import LLM, Completion, LLMConfig
from core.llm.base import candidate_seed
from core.llm.cache import CallCache
from data_pipeline.schema import make_row, rows_to_dataset

_ANSWER = re.compile(r"\[Answer\]\n(.*?)\n\n(?:Reply|Rate|Write)", re.DOTALL)
_FACET = re.compile(r"Rate only how (\w+) the answer is")


def answer_in(messages: list[dict]) -> str:
    """The candidate answer a judge prompt shows (between "[Answer]" and the instructions)."""
    match = _ANSWER.search(messages[-1]["content"])
    assert match, f"not a judge prompt: {messages[-1]['content'][:200]!r}"
    return match.group(1)


def facet_in(messages: list[dict]) -> str:
    return _FACET.search(messages[-1]["content"]).group(1)


class ScriptedBackend:
    """A Backend (see core.llm.base.Backend) answering from functions of the request.

    reply(messages, temperature, k) -> text, with k the candidate index; logprobs(messages, options) -> dict.
    Every request that reaches it is recorded, so tests can see what the cache let through.
    """

    def __init__(self, reply: Callable | None = None, logprobs: Callable | None = None, name: str = "scripted"):
        self.reply, self.logprobs, self.name = reply, logprobs, name
        self.generate_requests: list = []
        self.logprob_requests: list = []

    def key_fields(self) -> dict:
        return {"script": self.name}

    def generate(self, requests, on_done) -> None:
        for index, request in enumerate(requests):
            self.generate_requests.append(request)
            k = next(k for k in range(100) if candidate_seed(request.sampling.seed, k) == request.seed)
            text = self.reply(request.messages, request.sampling.temperature, k)
            on_done(index, Completion(text=text, output_tokens=len(text.split()), latency_s=0.0, cached=False))

    def next_token_logprobs(self, conversations, options, on_done) -> None:
        for index, conversation in enumerate(conversations):
            self.logprob_requests.append(conversation)
            on_done(index, self.logprobs(conversation, options))


def scripted_llm(backend: ScriptedBackend, role: str) -> LLM:
    return LLM(LLMConfig(backend="transformers", model=backend.name), backend, CallCache(None), role)


def prompt_rows(specs: list[tuple[str, str, list[int]]]):
    """(id, prompt, subdomains) triples -> a schema Dataset."""
    return rows_to_dataset([make_row(i, prompt, subdomains, "test") for i, prompt, subdomains in specs])
