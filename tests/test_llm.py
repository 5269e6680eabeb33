"""The LLM interface: call cache, call counts, and the transformers backend on the tiny models."""

import dataclasses
import json
import os
import subprocess
import sys
import threading

import pytest
import torch

from core.llm import LLMConfig, Sampling, build_llm, call_counts
from core.llm.base import candidate_seed, model_fingerprint
from core.llm.cache import CallCache
from tests.conftest import REPO_ROOT

SAMPLING = Sampling(temperature=0.7, top_p=0.9, max_new_tokens=12, seed=0)


def conversations(count: int, offset: int = 0) -> list[list[dict]]:
    return [
        [{"role": "user", "content": f"Question {i}: how is the harvest festival celebrated in region {i}?"}]
        for i in range(offset, offset + count)
    ]


@pytest.fixture(scope="module")
def qwen3_cfg(tiny_models) -> LLMConfig:
    return LLMConfig(model=str(tiny_models["tiny-qwen3"]), chat_template_kwargs={"enable_thinking": False})


@pytest.fixture(scope="module")
def qwen3(qwen3_cfg):
    """One loaded tiny Qwen3 backend shared by the module; each test wraps it in its own cache."""
    return build_llm(qwen3_cfg, None, "fixture").backend


def llm_on(backend, cfg, cache_dir, role):
    from core.llm import LLM

    return LLM(cfg, backend, CallCache(cache_dir), role)


def texts(candidates) -> list[list[str]]:
    return [[c.text for c in row] for row in candidates]


def test_config_validation():
    with pytest.raises(ValueError, match="backend"):
        LLMConfig(backend="nope", model="m")
    with pytest.raises(ValueError, match="base_url"):
        build_llm(LLMConfig(backend="openai", model="m"), None, "r")
    with pytest.raises(ValueError, match="model"):
        build_llm(LLMConfig(), None, "r")
    with pytest.raises(ValueError, match="top_p"):
        Sampling(top_p=0.0)


def test_candidate_seeds_are_distinct_and_stable():
    seeds = [candidate_seed(0, k) for k in range(100)]
    assert len(set(seeds)) == 100 and all(0 <= s < 2**31 for s in seeds)
    assert seeds == [candidate_seed(0, k) for k in range(100)]
    assert candidate_seed(1, 0) not in seeds[:2]


def test_bad_conversation_is_named(qwen3, qwen3_cfg, tmp_path):
    llm = llm_on(qwen3, qwen3_cfg, tmp_path, "bad")
    with pytest.raises(ValueError, match=r"conversations\[1\]\[0\]: field 'content'"):
        llm.generate([[{"role": "user", "content": "ok"}], [{"role": "user"}]], SAMPLING)
    with pytest.raises(ValueError, match="distinct non-empty"):
        llm.next_token_logprobs(conversations(1), ["Yes", "Yes"])


def test_generate_seeded_reproducible_and_batch_independent(qwen3, qwen3_cfg):
    first = llm_on(qwen3, qwen3_cfg, None, "t").generate(conversations(3), SAMPLING, n=3)
    again = llm_on(qwen3, qwen3_cfg, None, "t").generate(conversations(3), SAMPLING, n=3)
    assert texts(first) == texts(again)
    assert all(len(set(row)) == 3 for row in texts(first)), "the 3 candidates of a prompt should differ"
    assert all(c.output_tokens >= 1 and c.latency_s > 0 and not c.cached for row in first for c in row)
    # Candidate k of a conversation does not depend on what else shares its batch.
    alone = llm_on(qwen3, qwen3_cfg, None, "t").generate(conversations(1, offset=2), SAMPLING, n=3)
    assert texts(alone)[0] == texts(first)[2]
    # A different seed gives different candidates.
    other = llm_on(qwen3, qwen3_cfg, None, "t").generate(conversations(3), Sampling(0.7, 0.9, 12, seed=1), n=3)
    assert texts(other) != texts(first)


def test_greedy_matches_model_generate(qwen3, qwen3_cfg):
    llm = llm_on(qwen3, qwen3_cfg, None, "t")
    [[completion]] = llm.generate(conversations(1), Sampling(max_new_tokens=8))
    enc = qwen3.tokenizer(qwen3.prompt_text(conversations(1)[0]), return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        out = qwen3.model.generate(**enc, max_new_tokens=8, do_sample=False)
    expected = qwen3.tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    assert completion.text == expected


def test_top_k_one_samples_the_greedy_answer_and_keys_the_cache(qwen3, qwen3_cfg):
    # Top-k 1 leaves one token per step, so even at temperature 2 the sample is the greedy answer; without top-k the
    # same seeds sample something else (the random-weight model's distribution is nearly flat).
    llm = llm_on(qwen3, qwen3_cfg, None, "t")
    [[greedy]] = llm.generate(conversations(1), Sampling(max_new_tokens=8))
    [[top1]] = llm.generate(conversations(1), Sampling(2.0, 1.0, 8, seed=3, top_k=1))
    [[free]] = llm.generate(conversations(1), Sampling(2.0, 1.0, 8, seed=3))
    assert top1.text == greedy.text and free.text != greedy.text
    # top_k enters the cache key only when set: keys cached before the knob existed stay valid.
    assert "top_k" not in Sampling(0.7).cache_fields() and Sampling(0.7, top_k=20).cache_fields()["top_k"] == 20
    with pytest.raises(ValueError, match="top_k >= 0"):
        Sampling(top_k=-1)


def test_chat_template_kwargs_reach_the_template(qwen3):
    assert qwen3.prompt_text(conversations(1)[0]).endswith("<think>\n\n</think>\n\n")


def test_cache_hit_miss_counts_and_identical_outputs(qwen3, qwen3_cfg, tmp_path):
    before = call_counts().get("cache-test", {"new": 0, "cached": 0})
    first = llm_on(qwen3, qwen3_cfg, tmp_path, "cache-test").generate(conversations(2), SAMPLING, n=2)
    files = sorted(tmp_path.glob("??/*.json"))
    assert len(files) == 4
    llm = llm_on(qwen3, qwen3_cfg, tmp_path, "cache-test")
    second = llm.generate(conversations(2), SAMPLING, n=3)
    assert llm.usage() == {"calls": 2, "output_tokens": sum(row[2].output_tokens for row in second)}
    assert [row[:2] for row in texts(second)] == texts(first)
    assert [[c.cached for c in row] for row in second] == [[True, True, False], [True, True, False]]
    after = call_counts()["cache-test"]
    assert after["new"] - before["new"] == 4 + 2 and after["cached"] - before["cached"] == 4
    assert len(list(tmp_path.glob("??/*.json"))) == 6
    # A different sampling setting or model is a different key.
    changed = llm_on(qwen3, qwen3_cfg, tmp_path, "cache-test").generate(conversations(1), Sampling(0.7, 0.8, 12))
    assert not changed[0][0].cached
    # Values are plain completion JSON.
    value = json.loads(files[0].read_text())
    assert set(value) == {"text", "output_tokens", "latency_s", "wall_s"}


def test_a_local_model_is_cached_by_its_content_not_its_path(qwen3, tiny_models, tmp_path):
    """A copy of the model elsewhere reuses its answers; another model written to the same path (here the same
    weights with one value changed, as a re-conversion would) never does; a hub id keeps its name."""
    import shutil

    from safetensors.torch import load_file, save_file

    original, moved = tmp_path / "model", tmp_path / "moved"
    shutil.copytree(tiny_models["tiny-qwen3"], original)
    shutil.copytree(tiny_models["tiny-qwen3"], moved)
    cfg = lambda path: LLMConfig(model=str(path), chat_template_kwargs={"enable_thinking": False})  # noqa: E731
    first = llm_on(qwen3, cfg(original), tmp_path / "cache", "fp").generate(conversations(1), SAMPLING)
    again = llm_on(qwen3, cfg(moved), tmp_path / "cache", "fp").generate(conversations(1), SAMPLING)
    assert not first[0][0].cached and again[0][0].cached and again[0][0].text == first[0][0].text
    weights = load_file(str(original / "model.safetensors"))
    name = next(iter(weights))
    weights[name] = weights[name].clone()
    weights[name].view(-1)[-1] += 1.0  # the last value of the first tensor: inside the fingerprint's first MiB
    save_file(weights, str(original / "model.safetensors"), metadata={"format": "pt"})
    changed = llm_on(qwen3, cfg(original), tmp_path / "cache", "fp").generate(conversations(1), SAMPLING)
    assert not changed[0][0].cached
    assert model_fingerprint(str(original)) != model_fingerprint(str(moved)) is not None
    assert model_fingerprint("Qwen/Qwen3-8B") is None


def test_duplicate_conversations_in_one_call_make_one_model_call(qwen3, qwen3_cfg, tmp_path):
    before = call_counts().get("dup", {"new": 0, "cached": 0})
    out = llm_on(qwen3, qwen3_cfg, tmp_path, "dup").generate(conversations(1) * 3, SAMPLING)
    assert len({row[0].text for row in out}) == 1
    assert len(list(tmp_path.glob("??/*.json"))) == 1
    after = call_counts()["dup"]
    assert (after["new"] - before["new"], after["cached"] - before["cached"]) == (1, 2)


def test_next_token_logprobs_match_a_manual_forward_pass(qwen3, qwen3_cfg, tmp_path):
    convs = conversations(1) + [[{"role": "user", "content": "Hi"}]] + conversations(1, offset=7)
    options = ["Yes", "No", " maybe"]
    llm = llm_on(qwen3, qwen3_cfg, tmp_path, "judge")
    scores = llm.next_token_logprobs(convs, options)
    for conversation, score in zip(convs, scores, strict=True):
        ids = qwen3.tokenizer(qwen3.prompt_text(conversation), return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            logits = qwen3.model(**ids).logits[0, -1].float()
        expected = torch.log_softmax(logits, -1)
        for option in options:
            token = qwen3.tokenizer.encode(option, add_special_tokens=False)[0]
            assert score[option] == pytest.approx(float(expected[token]), abs=1e-4)
    assert llm.next_token_logprobs(convs, options) == scores  # served from the cache, identical


def test_tiny_qwen2_backend_generates(tiny_models):
    cfg = LLMConfig(model=str(tiny_models["tiny-qwen2"]), batch_size=2)
    llm = build_llm(cfg, None, "qwen2")
    out = llm.generate(conversations(3), SAMPLING, n=2)
    assert [len(row) for row in out] == [2, 2, 2]
    assert llm.name == f"transformers:{tiny_models['tiny-qwen2']}"
    assert set(llm.next_token_logprobs(conversations(1), ["Yes", "No"])[0]) == {"Yes", "No"}


def test_cache_concurrent_writers_and_orphans(tmp_path):
    cache = CallCache(tmp_path)
    keys = [f"{i:064x}" for i in range(40)]

    def write(worker: int) -> None:
        for key in keys:
            cache.put(key, {"text": f"value for {key}", "writer": worker})

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(cache.get(key)["text"] == f"value for {key}" for key in keys)
    assert len(cache) == 40 and not list(tmp_path.glob("??/.tmp-*"))
    orphan = tmp_path / keys[0][:2] / ".tmp-dead"
    orphan.write_text('{"trunc')  # what a writer killed before its rename leaves
    assert len(CallCache(tmp_path)) == 40 and CallCache(tmp_path).get(keys[0]) is not None


WRITER = """
import sys
from core.llm.base import model_fingerprint
from core.llm.cache import CallCache
cache = CallCache(sys.argv[1])
for i in range(200):
    cache.put(f"{i:064x}", {"text": "x" * 5000, "writer": sys.argv[2]})
"""


def test_cache_concurrent_writer_processes(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(w)], cwd=REPO_ROOT, env=env)
        for w in range(3)
    ]
    assert [writer.wait(timeout=60) for writer in writers] == [0, 0, 0]
    cache = CallCache(tmp_path)
    assert len(cache) == 200
    assert all(cache.get(f"{i:064x}")["text"] == "x" * 5000 for i in range(200))


def test_adapter_changes_the_key(qwen3_cfg, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(qwen3_cfg.model)
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    cfg = dataclasses.replace(qwen3_cfg, adapter=str(tmp_path / "adapter"))
    llm = build_llm(cfg, tmp_path / "cache", "adapter")
    assert llm.name.endswith("+" + str(tmp_path / "adapter"))
    first = llm.next_token_logprobs(conversations(1), ["Yes"])[0]["Yes"]
    base = build_llm(qwen3_cfg, tmp_path / "cache", "adapter").next_token_logprobs(conversations(1), ["Yes"])
    assert first != pytest.approx(base[0]["Yes"], abs=1e-6), "the adapter must change the answer"
    key_before = llm._key(kind="x")
    peft_model.save_pretrained(tmp_path / "adapter")  # same weights again: same fingerprint
    assert build_llm(cfg, None, "adapter")._key(kind="x") == key_before
