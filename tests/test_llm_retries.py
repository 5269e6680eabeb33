"""Retries you can see: counted per role and cause, a total deadline per call, quiet request logs, a stage bar."""

import logging
import socket
import time
from collections import Counter

import pytest

from core.llm import LLMConfig, LLMRequestError, Sampling, build_llm, llm_progress, llm_stats
from core.llm.local_server import Faults, LocalOpenAIServer


def scripted(messages: list[dict], params: dict) -> str:
    return f"reply to {messages[-1]['content']!r} seed={params['seed']}"


def conversations(count: int) -> list[list[dict]]:
    return [[{"role": "user", "content": f"prompt {i}"}] for i in range(count)]


def openai_llm(base_url: str, role: str, **overrides):
    cfg = LLMConfig(backend="openai", model="scripted", base_url=base_url, **overrides)
    return build_llm(cfg, None, role)


def test_retries_are_counted_per_role_and_cause():
    replies = []

    def reply(messages, params):
        replies.append(1)
        if len(replies) == 2:  # the reply after the dropped one comes after the client's 0.5 s timeout
            time.sleep(1.0)
        return scripted(messages, params)

    faults = Faults(rate_limit=2, server_error=3, drop=1, retry_after_s=0.05)
    with LocalOpenAIServer(reply, faults=faults) as server:
        llm = openai_llm(server.base_url, "retry-causes", max_concurrency=6, timeout_s=0.5, max_retries=8)
        llm.generate(conversations(6), Sampling())
        time.sleep(0.6)  # the abandoned slow request is recorded when the server finishes it
        outcomes = [r.outcome for r in server.records]
    # Each injected fault is one failed attempt, retried once; the slow answer (a timeout) is served as "ok" or
    # "client_gone", whichever the socket notices first.
    assert Counter(outcomes) - Counter(ok=7, client_gone=1) == Counter(drop=1, rate_limit=2, server_error=3)
    assert len(outcomes) == 6 + 1 + 6
    assert llm_stats()["retry-causes"] == {
        "calls": 6, "new": 6, "cached": 0,
        "retries": {"timeout": 1, "429": 2, "5xx": 3, "connection": 1, "other": 0},
        "failures": 0,
    }  # fmt: skip


def test_a_hung_endpoint_fails_at_the_deadline_with_one_line():
    with LocalOpenAIServer(scripted, faults=Faults(delay_s=30)) as server:
        llm = openai_llm(server.base_url, "hung", timeout_s=1, max_retries=6, deadline_s=2)
        start = time.monotonic()
        with pytest.raises(LLMRequestError) as error:
            llm.generate(conversations(1), Sampling())
        elapsed = time.monotonic() - start
        # Attempt 1 times out at 1 s, attempt 2 starts after 0.4-0.5 s of backoff and is cut at 2 s. Without the
        # deadline: 7 attempts of 1 s plus 17.6-23.5 s of backoff (0.5, 1, 2, 4, 8, 8 s less jitter), 25-31 s; the
        # bound of 6 s leaves a loaded CI machine room and still fails long before that.
        assert 2.0 <= elapsed < 6.0, elapsed
        assert str(error.value) == (
            f"hung: scripted at {server.base_url}: no answer within the 2 s deadline (deadline_s); tried 2 attempts "
            "(timeout x1), timeout 1 s per attempt, max_retries=6"
        )
        assert "\n" not in str(error.value)
    assert llm_stats()["hung"]["retries"]["timeout"] == 1 and llm_stats()["hung"]["failures"] == 1


def test_a_dead_endpoint_names_role_url_and_attempts():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(LLMRequestError) as error:
        openai_llm(base_url, "dead", max_retries=2).generate(conversations(1), Sampling())
    assert str(error.value) == (
        f"dead: scripted at {base_url}: APIConnectionError (timeout 120 s per attempt); tried 3 attempts "
        "(connection x3), max_retries=2"
    )
    assert llm_stats()["dead"]["retries"] == {"timeout": 0, "429": 0, "5xx": 0, "connection": 2, "other": 0}
    assert llm_stats()["dead"]["failures"] == 1


def test_request_logs_are_quiet_by_default(caplog):
    caplog.set_level(logging.INFO)
    with LocalOpenAIServer(scripted, faults=Faults(server_error=1)) as server:
        openai_llm(server.base_url, "quiet").generate(conversations(2), Sampling())
    noisy = [
        r for r in caplog.records if r.name.split(".")[0] in ("httpx", "httpx2", "httpcore", "httpcore2", "openai")
    ]
    assert noisy == []  # without quieting: one "HTTP Request" line per request and a "Retrying request" line
    assert logging.getLogger("httpx2").level == logging.WARNING


def test_one_progress_bar_per_stage_counts_done_cached_and_retries():
    with LocalOpenAIServer(scripted, faults=Faults(server_error=2, rate_limit=1, retry_after_s=0.05)) as server:
        llm = build_llm(LLMConfig(backend="openai", model="scripted", base_url=server.base_url), None, "bar")
        with llm_progress("generate") as progress:
            llm.generate(conversations(4), Sampling(), n=2)  # 8 new calls
            llm.generate(conversations(4), Sampling(), n=2)  # the same 8, from the in-memory cache
    assert (progress.total, progress.done, progress.cached, progress.new) == (16, 16, 8, 8)
    assert (progress.retries, progress.failures) == (3, 0)
    assert progress.postfix().startswith("cached=8 retries=3 failed=0 ")
