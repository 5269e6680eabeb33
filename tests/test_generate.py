"""Candidate generation: prompts, sampling settings, K candidates per row, stability through the cache."""

import pytest

from core.llm import Sampling
from data_pipeline import taxonomy
from data_pipeline.generate import (
    GenerateConfig,
    cultural_context,
    generate_candidates,
    load_prompt,
    revision_conversation,
)
from tests._candidates_fixtures import ScriptedBackend, prompt_rows, scripted_llm


def echo_generator() -> ScriptedBackend:
    # "<user prompt> #k@temperature": shows which candidate index and sampling produced the text.
    return ScriptedBackend(reply=lambda messages, temperature, k: f"{messages[-1]['content']} #{k}@{temperature}")


def test_defaults_are_the_papers():
    cfg = GenerateConfig()
    assert (cfg.k, cfg.temperature, cfg.top_p, cfg.max_new_tokens) == (3, 0.7, 0.9, 512)
    assert cfg.sampling() == Sampling(temperature=0.7, top_p=0.9, max_new_tokens=512, seed=0)
    assert cfg.sampling(iteration=2).seed == 2  # a revision is a fresh sample
    with pytest.raises(ValueError, match="k must be >= 1"):
        GenerateConfig(k=0)


def test_k_candidates_per_row_with_cultural_context():
    backend = echo_generator()
    llm = scripted_llm(backend, "generator")
    ds = prompt_rows([("a", "How is Diwali celebrated?", [15]), ("b", "What is batik?", [12, 28])])
    out = generate_candidates(ds, llm, GenerateConfig(k=3, batch_size=1))

    assert out["candidates"] == [
        [f"How is Diwali celebrated? #{k}@0.7" for k in range(3)],
        [f"What is batik? #{k}@0.7" for k in range(3)],
    ]
    assert out.column_names[: len(ds.column_names)] == ds.column_names  # schema columns kept
    assert len(backend.generate_requests) == 6
    request = backend.generate_requests[0]
    assert request.sampling == Sampling(temperature=0.7, top_p=0.9, max_new_tokens=512, seed=0)
    system = request.messages[0]
    assert system["role"] == "system"
    assert request.messages[1] == {"role": "user", "content": "How is Diwali celebrated?"}
    festivals = taxonomy.get(15)
    assert festivals.name in system["content"] and festivals.description in system["content"]
    assert "helpful, harmless and honest" in system["content"]
    batik_system = backend.generate_requests[3].messages[0]["content"]
    assert taxonomy.get(12).name in batik_system and taxonomy.get(28).name in batik_system


def test_candidates_are_stable_and_cached():
    backend = echo_generator()
    llm = scripted_llm(backend, "generator")
    ds = prompt_rows([("a", "Explain kintsugi.", [12])])
    first = generate_candidates(ds, llm, GenerateConfig(k=2))
    again = generate_candidates(first, llm, GenerateConfig(k=3))  # asking for more keeps the first two
    assert again["candidates"][0][:2] == first["candidates"][0]
    assert len(backend.generate_requests) == 3  # 2 + only the new third candidate


def test_revision_conversation_carries_the_critique():
    system, feedback = load_prompt("generate_system_v1.txt"), load_prompt("feedback_revision_v1.txt")
    score = {"helpful": 2.0, "harmless": 5.0, "honest": None, "rationale": "Ignores the regional variants."}
    messages = revision_conversation("Q?", [10], "old answer", score, 5, system, feedback)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[2]["content"] == "old answer"
    request = messages[3]["content"]
    assert "Ignores the regional variants." in request and "helpful 2.0" in request and "honest n/a" in request
    unparsable = {"helpful": None, "harmless": None, "honest": None, "rationale": "unparsable judgement: no JSON"}
    request = revision_conversation("Q?", [10], "old", unparsable, 5, system, feedback)[3]["content"]
    assert "(no critique available)" in request and "no JSON" not in request


def test_prompt_and_taxonomy_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="generate_system_v9.txt"):
        load_prompt("generate_system_v9.txt")
    custom = tmp_path / "mine.txt"
    custom.write_text("Context: $context")
    assert load_prompt(str(custom)).substitute(context="x") == "Context: x"
    with pytest.raises(KeyError, match="999"):
        cultural_context([999])


def test_generation_on_tiny_model(tiny_models, tmp_path):
    from core.llm import LLMConfig, build_llm, call_counts

    cfg = LLMConfig(backend="transformers", model=str(tiny_models["tiny-qwen3"]), dtype="float32")
    cfg.chat_template_kwargs = {"enable_thinking": False}
    ds = prompt_rows([("a", "What is the meaning of the Day of the Dead?", [15]), ("b", "Who makes kente?", [12])])
    gen = GenerateConfig(k=2, max_new_tokens=8)
    first = generate_candidates(ds, build_llm(cfg, tmp_path / "cache", role="gen-test"), gen)
    assert [len(c) for c in first["candidates"]] == [2, 2]
    assert all(isinstance(text, str) for row in first["candidates"] for text in row)
    assert call_counts()["gen-test"] == {"new": 4, "cached": 0}
    # A fresh process-level LLM over the same cache: identical candidates, no new model call.
    again = generate_candidates(ds, build_llm(cfg, tmp_path / "cache", role="gen-test"), gen)
    assert again["candidates"] == first["candidates"]
    assert call_counts()["gen-test"] == {"new": 4, "cached": 4}
