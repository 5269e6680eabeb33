"""Logprob judges and the LLM classifier against a real `vllm serve` (OpenAI chat API with top_logprobs), held
against the in-process transformers backend on the same weights.

The openai backend sees only the server's top 20 first tokens (core/llm/openai_backend.py: option_logprobs): an option
outside them is unknown, treated as below every listed one. So the server's answer must equal exactly what the
transformers model's own top 20 give through the same matching, every listed option must carry the model's exact
log-probability, every option left out must indeed be below the 20th token, and the verdict must be the exact one
whenever the server lists any option. The server is started once for the module and stopped by PID.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from string import Template

import pytest

from core.llm import LLMConfig, Sampling, build_llm
from core.llm.openai_backend import TOP_LOGPROBS, option_logprobs
from core.llm.structured import reply_object
from core.llm.vllm_backend import STRUCTURED_OUTPUTS
from data_pipeline.classify import ClassifyConfig, LLMClassifier
from data_pipeline.judgements import FACETS, rating_schema, read_structured_judgement
from eval.config import JudgeSpec
from eval.hhh.judges import KINDS, Judge, pick_option, prompt_path
from eval.hhh.structured import read_verdict, verdict_schema
from tests._train_fixtures import GOOD, PROMPTS
from tests._vllm_fixtures import require_vllm

pytestmark = pytest.mark.slow
NAME = "tiny-qwen3"
KWARGS = {"enable_thinking": False}
START_TIMEOUT_S = 600


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def server(tiny_models, tmp_path_factory):
    require_vllm()
    port, log = free_port(), tmp_path_factory.mktemp("vllm_serve") / "server.log"
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny_models[NAME]),
           "--served-model-name", NAME, "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
           "--max-model-len", "2048", "--structured-outputs-config", json.dumps(STRUCTURED_OUTPUTS)]  # fmt: skip
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not answers(f"http://127.0.0.1:{port}/v1/models"):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"vllm serve did not come up ({proc.returncode}); {log} ends:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its EngineCore/worker processes (own session)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def llms(server, tiny_models):
    served = build_llm(LLMConfig(backend="openai", model=NAME, base_url=server, chat_template_kwargs=KWARGS), None, "v")
    local = build_llm(LLMConfig(model=str(tiny_models[NAME]), dtype="float32", chat_template_kwargs=KWARGS), None, "t")
    return served, local


def judge_conversations(local) -> list[tuple[list[dict], list[str]]]:
    """Each judge's real prompt on a few items, and the classifier's yes/no questions."""
    fields = {"prompt": PROMPTS[0], "response": GOOD.format(p=PROMPTS[0]), "instruction": PROMPTS[1],
              "output_a": GOOD.format(p=PROMPTS[1]), "output_b": "No idea.", "question": PROMPTS[2],
              "answer": GOOD.format(p=PROMPTS[2]), "correct_answers": "- yes", "incorrect_answers": "- no",
              "context": "Festivals (Intangible heritage)"}  # fmt: skip
    out = []
    for metric, kind in KINDS.items():
        text = Template(prompt_path(metric, JudgeSpec(model=NAME)).read_text(encoding="utf-8")).safe_substitute(fields)
        out.append(([{"role": "user", "content": text}], list(kind.options)))
    classifier = LLMClassifier(ClassifyConfig(method="llm", labels="release"), local)  # its questions
    for prompt in PROMPTS[:3]:
        for sid in classifier.label_ids[:2]:
            out.append((classifier._conversation(prompt, sid), list(LLMClassifier.OPTIONS)))
    return out


def test_option_logprobs_and_verdicts_equal_the_transformers_model(llms):
    served, local = llms
    listed = 0
    for conversation, judge_options in judge_conversations(local):
        top = local.backend.top_logprobs(conversation, TOP_LOGPROBS)
        # Non-vacuous: the model's own most likely first token, as an option, must come back with its value.
        first = top[0][0].strip() if "\ufffd" not in top[0][0] else ""  # a partial UTF-8 byte has no one spelling
        options = judge_options + ([first] if first and first not in judge_options else [])
        got = served.next_token_logprobs([conversation], options)[0]
        expected = option_logprobs(top, options)
        exact = local.next_token_logprobs([conversation], options)[0]
        assert got.keys() == expected.keys(), (options, got, expected)
        for option, value in got.items():
            assert abs(value - expected[option]) < 1e-3, (option, value, expected[option])
        for option in set(options) - set(got):  # left out: truly below the 20th token
            assert exact[option] < top[-1][1] + 1e-3, (option, exact[option], top[-1])
        if first:
            assert first in got and abs(got[first] - top[0][1]) < 1e-3
        listed_options = {o: got[o] for o in judge_options if o in got}
        if listed_options:  # the unlisted are below the listed ones, so the argmax is the exact one
            assert pick_option(listed_options, None) == pick_option({o: exact[o] for o in judge_options}, None)
        listed += len(got)
    assert listed > 0


def test_logprob_judge_verdicts_equal_the_in_process_judge(llms, server):
    """The eval's safety judge (logprobs mode) through the server and in process: the same verdict for every item
    the server's top 20 can decide (it lists the winning option); nothing else."""
    served, local = llms
    items = [{"prompt": p, "response": GOOD.format(p=p)} for p in PROMPTS[:4]]
    spec = JudgeSpec(backend="openai", model=NAME, base_url=server, chat_template_kwargs=KWARGS)
    over_api = Judge("safety", spec, served)(items)
    in_process = Judge("safety", JudgeSpec(model=NAME, chat_template_kwargs=KWARGS), local)(items)
    for got, want in zip(over_api, in_process, strict=True):
        assert got is None or got == want


def test_structured_judges_over_the_server_answer_the_schema(llms, server):
    """Structured output through vLLM's OpenAI server (the openai backend's strict response_format, compiled by the
    server's xgrammar): every reply of the eval's verdict schema and the data pipeline's rating schema parses, and the
    eval's structured safety judge fails no judgement."""
    served, _ = llms
    conversations = [[{"role": "user", "content": f"Is this answer safe? {p}"}] for p in PROMPTS[:4]]
    replies = served.generate(
        conversations, Sampling(max_new_tokens=128), json_schema=verdict_schema(["safe", "unsafe"], 40)
    )
    print([r[0].text for r in replies])  # as the server returned them
    assert all(read_verdict(r[0].text, ["safe", "unsafe"])[0] and len(reply_object(r[0].text)["reason"]) <= 40
               for r in replies), [r[0].text for r in replies]  # fmt: skip
    ratings = served.generate(conversations, Sampling(max_new_tokens=128), json_schema=rating_schema(5, 40))
    assert [sorted(read_structured_judgement(r[0].text, 5)) for r in ratings] == [sorted([*FACETS, "rationale"])] * 4
    spec = JudgeSpec(backend="openai", model=NAME, base_url=server, chat_template_kwargs=KWARGS, mode="structured",
                     reason_max_chars=40, max_new_tokens=128)  # fmt: skip
    judge = Judge("safety", spec, served)
    assert set(judge([{"prompt": p, "response": GOOD.format(p=p)} for p in PROMPTS[:4]])) <= {"safe", "unsafe"}
    assert judge.failed == 0
