"""The openai backend against the real local HTTP server: faults, retries, errors, secrets, and kill -9 resume."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from core.llm import LLMConfig, LLMRequestError, Sampling, build_llm, call_counts
from core.llm.local_server import Faults, LocalOpenAIServer, conversation_key
from core.llm.openai_backend import option_logprobs
from tests.conftest import REPO_ROOT


def scripted(messages: list[dict], params: dict) -> str:
    """A reply that names its call, so every answer can be checked and traced back to its request."""
    return f"reply to {messages[-1]['content']!r} seed={params['seed']}"


def conversations(count: int) -> list[list[dict]]:
    return [[{"role": "user", "content": f"prompt {i}"}] for i in range(count)]


def openai_llm(server, cache_dir=None, role="client", **overrides):
    cfg = LLMConfig(backend="openai", model=server.model_name, base_url=server.base_url, **overrides)
    return build_llm(cfg, cache_dir, role)


def assert_right_content(convs, candidates):
    for conversation, row in zip(convs, candidates, strict=True):
        prompt = conversation[-1]["content"]
        assert all(c.text.startswith(f"reply to {prompt!r} seed=") for c in row)
        assert len({c.text for c in row}) == len(row)  # each candidate has its own seed


def max_overlap(records) -> int:
    events = sorted([(r.start, 1) for r in records] + [(r.end, -1) for r in records], key=lambda e: (e[0], e[1]))
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def test_models_route_and_scripted_queue():
    with LocalOpenAIServer(["first", "second"], model_name="queue") as server:
        with urllib.request.urlopen(f"{server.base_url}/models") as response:
            assert json.load(response)["data"][0]["id"] == "queue"
        llm = openai_llm(server, max_concurrency=1)
        out = llm.generate(conversations(2), Sampling())
        assert [row[0].text for row in out] == ["first", "second"]
        expected_usage = {"calls": 2, "output_tokens": 2, "prompt_tokens": 4, "completion_tokens": 2, "requests": 2}
        assert llm.usage() == expected_usage
        assert out[0][0].output_tokens == 1


def test_delays_with_bounded_concurrency():
    with LocalOpenAIServer(scripted, faults=Faults(delay_s=0.3, jitter_s=0.05)) as server:
        convs = conversations(10)
        assert_right_content(convs, openai_llm(server, max_concurrency=4).generate(convs, Sampling(), n=1))
        assert max_overlap(server.records) == 4


def test_rate_limit_honours_retry_after():
    with LocalOpenAIServer(scripted, faults=Faults(rate_limit=1, retry_after_s=1.5)) as server:
        [[completion]] = openai_llm(server).generate(conversations(1), Sampling())
        assert completion.text.startswith("reply to 'prompt 0'")
        limited, answered = server.records
        assert (limited.outcome, answered.outcome) == ("rate_limit", "ok")
        waited = answered.start - limited.end
        # The client's own backoff for a first retry is at most 0.5 s; Retry-After asked for 1.5 s.
        assert 1.5 <= waited < 3.0, waited


def test_server_errors_retried_with_exponential_backoff():
    with LocalOpenAIServer(scripted, faults=Faults(server_error=2)) as server:
        [[completion]] = openai_llm(server).generate(conversations(1), Sampling())
        assert completion.text.startswith("reply to 'prompt 0'")
        outcomes = [r.outcome for r in server.records]
        assert outcomes == ["server_error", "server_error", "ok"]
        first_gap = server.records[1].start - server.records[0].end
        second_gap = server.records[2].start - server.records[1].end
        assert 0.375 <= first_gap < second_gap, (first_gap, second_gap)  # 0.5 s then 1 s, minus <= 25 % jitter


def test_backoff_has_jitter():
    with LocalOpenAIServer(scripted, faults=Faults(server_error=4)) as server:
        convs = conversations(4)
        assert_right_content(convs, openai_llm(server, max_concurrency=4).generate(convs, Sampling()))
        failed = {r.conversation: r.end for r in server.records if r.outcome == "server_error"}
        gaps = [r.start - failed[r.conversation] for r in server.records if r.outcome == "ok"]
        assert len(gaps) == 4 and all(0.375 <= gap for gap in gaps), gaps  # 0.5 s minus up to 25 %
        assert max(gaps) - min(gaps) > 0.005, gaps  # not one fixed delay


def test_dropped_connections_retried():
    with LocalOpenAIServer(scripted, faults=Faults(drop=3)) as server:
        convs = conversations(4)
        assert_right_content(convs, openai_llm(server, max_concurrency=2).generate(convs, Sampling(), n=2))
        outcomes = [r.outcome for r in server.records]
        assert outcomes.count("drop") == 3 and outcomes.count("ok") == 8


def test_random_faults_every_request_finishes_once():
    faults = Faults(rate_limit_rate=0.1, server_error_rate=0.1, drop_rate=0.1, retry_after_s=0.05, seed=7)
    with LocalOpenAIServer(scripted, faults=faults) as server:
        convs = conversations(8)
        out = openai_llm(server, max_concurrency=8, max_retries=12).generate(convs, Sampling(temperature=0.7), n=2)
        assert_right_content(convs, out)
        assert {r.outcome for r in server.records} - {"ok"}, "the rates should have injected some faults"
        calls = server.completed_calls()
        assert len(calls) == 16 and set(calls.values()) == {1}


def test_timeouts_retried_then_clear_error():
    with LocalOpenAIServer(scripted, faults=Faults(delay_s=1.0)) as server:
        llm = openai_llm(server, timeout_s=0.3, max_retries=1)
        with pytest.raises(LLMRequestError, match=r"APITimeoutError .*tried 2 attempts \(timeout x2\)"):
            llm.generate(conversations(1), Sampling())
        time.sleep(1.2)  # let the server finish the abandoned requests before counting them
        assert len(server.records) == 2  # first attempt + one retry
        # The server notices the client left when its write fails ("client_gone"); a write that lands in the
        # socket buffer before the reset counts as answered ("ok"): the client never saw either.
        assert {r.outcome for r in server.records} <= {"client_gone", "ok"}


def test_sync_calls_work_inside_a_running_event_loop_and_reuse_the_client():
    with LocalOpenAIServer(scripted) as server:
        llm = openai_llm(server)

        async def caller():  # e.g. a Jupyter cell: a loop is already running in this thread
            return llm.generate(conversations(2), Sampling())

        assert_right_content(conversations(2), asyncio.run(caller()))
        client = llm.backend._client
        assert_right_content(conversations(3), llm.generate(conversations(3), Sampling()))
        assert llm.backend._client is client


def test_retries_exhausted_is_a_clear_error():
    with LocalOpenAIServer(scripted, faults=Faults(rate_limit=5, retry_after_s=0.05)) as server:
        with pytest.raises(
            LLMRequestError, match=r"HTTP 429 RateLimitError: .*\(injected\).*tried 3 attempts \(429 x3\)"
        ):
            openai_llm(server, max_retries=2).generate(conversations(1), Sampling())
        assert [r.outcome for r in server.records] == ["rate_limit"] * 3


def test_other_4xx_fail_at_once_with_a_clear_error(monkeypatch):
    with LocalOpenAIServer(scripted, model_name="served") as server:
        cfg = LLMConfig(backend="openai", model="missing-model", base_url=server.base_url)
        with pytest.raises(LLMRequestError, match=r"missing-model at http://127\.0\.0\.1:\d+/v1: HTTP 404"):
            build_llm(cfg, None, "4xx").generate(conversations(1), Sampling())
        assert [r.outcome for r in server.records] == ["http_404"]  # not retried
    monkeypatch.delenv("UNSET_KEY_VAR", raising=False)
    with pytest.raises(LLMRequestError, match="UNSET_KEY_VAR"):
        build_llm(LLMConfig(backend="openai", model="m", base_url="http://x", api_key_env="UNSET_KEY_VAR"), None, "r")


def test_api_key_from_env_never_reaches_the_cache(tmp_path, monkeypatch):
    secret = "sk-test-7f3a9c1e5b2d4f6a8c0e"
    monkeypatch.setenv("LOCAL_TEST_KEY", secret)
    with LocalOpenAIServer(scripted, api_key=secret) as server:
        llm = openai_llm(server, tmp_path / "cache", api_key_env="LOCAL_TEST_KEY")
        assert_right_content(conversations(3), llm.generate(conversations(3), Sampling(), n=2))
        files = list((tmp_path / "cache").rglob("*"))
        assert len([f for f in files if f.is_file()]) == 6
        assert not any(secret in f.read_text() for f in files if f.is_file())
        assert secret not in repr(llm.cfg) and secret not in llm.name
        monkeypatch.setenv("LOCAL_TEST_KEY", "sk-wrong")
        with pytest.raises(LLMRequestError, match="HTTP 401"):
            openai_llm(server, None, api_key_env="LOCAL_TEST_KEY").generate(conversations(1), Sampling())


def test_option_logprobs_matching():
    top = [("Yes", -0.2), (" Yes", -2.0), ("No", -1.9), ("Y", -3.0), ("maybe", -6.0)]
    scores = option_logprobs(top, ["Yes", "No", "Unsure"])
    assert scores["Yes"] == pytest.approx(-0.2 + __import__("math").log(1 + __import__("math").exp(-1.8)))
    assert scores["No"] == -1.9
    assert "Unsure" not in scores  # absent from the top-k: unknown, so not imputed (tests/test_verdicts.py)


def test_logprobs_through_scripted_server():
    def reply(messages, params):
        return {"content": "Yes", "top_logprobs": [("Yes", -0.1), ("No", -2.5)]}

    with LocalOpenAIServer(reply) as server:
        [scores] = openai_llm(server).next_token_logprobs(conversations(1), ["Yes", "No"])
        assert scores == {"Yes": -0.1, "No": -2.5}
        assert server.records[0].fields["logprobs"] is True
    with LocalOpenAIServer(scripted) as server, pytest.raises(LLMRequestError, match="HTTP 400"):
        openai_llm(server).next_token_logprobs(conversations(1), ["Yes"])


def test_top_k_reaches_the_endpoint_only_when_set():
    with LocalOpenAIServer(scripted) as server:
        openai_llm(server).generate(conversations(1), Sampling(0.7, 0.8, 8, top_k=20))
        openai_llm(server).generate(conversations(1), Sampling(0.7, 0.8, 8))
        assert [record.fields["top_k"] for record in server.records] == [20, None]


def test_server_backed_by_a_tiny_model(tiny_models):
    kwargs = {"enable_thinking": False}
    with LocalOpenAIServer(model_path=tiny_models["tiny-qwen3"], chat_template_kwargs=kwargs) as server:
        llm = openai_llm(server, max_concurrency=2)
        sampling = Sampling(temperature=0.8, max_new_tokens=8, seed=1)
        first = llm.generate(conversations(2), sampling, n=2)
        again = openai_llm(server).generate(conversations(2), sampling, n=2)
        assert [[c.text for c in row] for row in first] == [[c.text for c in row] for row in again]
        assert all(1 <= c.output_tokens <= 8 for row in first for c in row)
        # First-token logprobs: the served top token's value equals the local backend's exact one.
        local = server.backend
        top = [(token, lp) for token, lp in local.top_logprobs(conversations(1)[0], 20) if token.strip()]
        option = top[0][0]
        [scores] = llm.next_token_logprobs(conversations(1), [option])
        [[exact]] = local.next_token_log_softmax(conversations(1))[:, local.option_token_ids([option])].tolist()
        assert scores[option] == pytest.approx(exact, abs=1e-5)


KILL_SCRIPT = """
import json, sys
from core.llm import LLMConfig, Sampling, build_llm
base_url, cache_dir, out = sys.argv[1:4]
cfg = LLMConfig(backend="openai", model="scripted", base_url=base_url, max_concurrency=4)
convs = [[{"role": "user", "content": f"prompt {i}"}] for i in range(40)]
result = build_llm(cfg, cache_dir, "kill").generate(convs, Sampling(temperature=0.7, seed=3), n=2)
json.dump([[c.text for c in row] for row in result], open(out, "w"))
"""


def call_of(text: str) -> tuple[str, int]:
    """(conversation key, seed) of a scripted reply: the identity the server counts calls by."""
    prompt, seed = text.removeprefix("reply to '").rsplit("' seed=", 1)
    return conversation_key([{"role": "user", "content": prompt}]), int(seed)


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_repeats_no_completed_call(tmp_path):
    convs = conversations(40)
    sampling = Sampling(temperature=0.7, seed=3)
    with LocalOpenAIServer(scripted, faults=Faults(delay_s=0.04, jitter_s=0.04)) as server:
        reference = openai_llm(server, tmp_path / "reference", max_concurrency=4).generate(convs, sampling, n=2)
        server.reset_records()
        cache = tmp_path / "cache"
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        args = [sys.executable, "-c", KILL_SCRIPT, server.base_url, str(cache), str(tmp_path / "out.json")]
        process = subprocess.Popen(args, cwd=REPO_ROOT, env=env)
        deadline = time.monotonic() + 60
        while len(list(cache.glob("??/*.json"))) < 20 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.005)
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL, "the run finished before it could be killed"

        # Every entry left by the killed writer must be whole JSON (json.loads raises otherwise).
        cached_calls = {call_of(json.loads(path.read_text())["text"]) for path in cache.glob("??/*.json")}
        assert 20 <= len(cached_calls) < 80
        answered_before_kill = set(server.completed_calls())
        server.reset_records()

        before = call_counts().get("resume", {"new": 0, "cached": 0})
        resumed = openai_llm(server, cache, "resume", max_concurrency=4).generate(convs, sampling, n=2)
        after = call_counts()["resume"]
        made_after = server.completed_calls()

    assert not cached_calls & set(made_after), "a call completed before the kill was made again"
    assert set(made_after.values()) == {1} and len(cached_calls) + len(made_after) == 80
    # Only calls in flight at the kill (answered, not yet stored) may be asked again: at most max_concurrency.
    assert len(answered_before_kill & set(made_after)) <= 4
    assert after["cached"] - before["cached"] == len(cached_calls)
    assert after["new"] - before["new"] == 80 - len(cached_calls)
    assert [[c.text for c in row] for row in resumed] == [[c.text for c in row] for row in reference]


@pytest.mark.slow
def test_cli_serves_a_tiny_model(tiny_models):
    port_probe = LocalOpenAIServer(scripted).start()  # borrow a free port, then release it for the CLI
    port = port_probe.port
    port_probe.stop()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    args = [sys.executable, "-m", "core.llm.local_server", "--model", str(tiny_models["tiny-qwen2"]),
            "--port", str(port)]  # fmt: skip
    process = subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert f"http://127.0.0.1:{port}/v1" in line, line
        cfg = LLMConfig(backend="openai", model="tiny-qwen2", base_url=f"http://127.0.0.1:{port}/v1")
        [[completion]] = build_llm(cfg, None, "cli").generate(conversations(1), Sampling(max_new_tokens=4))
        assert 1 <= completion.output_tokens <= 4
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
