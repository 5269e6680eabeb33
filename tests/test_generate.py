"""Candidate generation: prompts, sampling settings, K candidates per row, stability through the cache."""

import pytest
import torch
from transformers import TopPLogitsWarper

from core.llm import Sampling
from core.llm.base import candidate_seed, row_seed
from data_pipeline import taxonomy
from data_pipeline.generate import (
    GenerateConfig,
    cultural_context,
    generate_candidates,
    generation_conversation,
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


@torch.inference_mode()
def sampled_step_by_step(model, tokenizer, messages: list[dict], seed: int, gen: GenerateConfig) -> str:
    """One candidate sampled token by token without generate(), batching, padding or a KV cache: the chat template's
    prompt (thinking off); per step the last position's logits / temperature, transformers' TopPLogitsWarper, and one
    draw from this candidate's own torch.Generator (seeded from the conversation and the candidate's seed) by the
    exponential race argmax(p / E), E ~ Exp(1) over the vocabulary; up to and including an end-of-turn token.
    (transformers' own sampling draws with torch.multinomial from the global RNG, one stream for the whole batch, so
    it cannot give a candidate that is the same whatever shares its batch; the backend samples per row instead.)"""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    top_p, generator, new = TopPLogitsWarper(gen.top_p), torch.Generator().manual_seed(seed), []
    for _ in range(gen.max_new_tokens):
        scores = top_p(ids, model(ids).logits[:, -1, :].float() / gen.temperature)
        probs = torch.softmax(scores, dim=-1)[0]
        token = int(torch.argmax(probs / torch.empty_like(probs).exponential_(generator=generator)))
        new.append(token)
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
        if token in eos:
            break
    return tokenizer.decode(new, skip_special_tokens=True)


def test_generation_on_tiny_model(tiny_models, tmp_path):
    from core.llm import LLMConfig, build_llm, call_counts

    cfg = LLMConfig(backend="transformers", model=str(tiny_models["tiny-qwen3"]), dtype="float32")
    cfg.chat_template_kwargs = {"enable_thinking": False}
    specs = [("a", "What is the meaning of the Day of the Dead?", [15]), ("b", "Who makes kente?", [12])]
    ds = prompt_rows(specs)
    gen = GenerateConfig(k=2, max_new_tokens=8)
    llm = build_llm(cfg, tmp_path / "cache", role="gen-test")
    first = generate_candidates(ds, llm, gen)
    # Candidate k of a row: the row's conversation (system prompt naming its subdomains, then the prompt) sampled
    # at T=0.7, top-p 0.9 from seed row_seed(conversation, candidate_seed(0, k)), 8 new tokens at most.
    system = load_prompt(gen.system_prompt_file)
    model, tokenizer = llm.backend.model, llm.backend.tokenizer
    expected = []
    for _, prompt, subdomains in specs:
        messages = generation_conversation(prompt, subdomains, system)
        seeds = [row_seed(messages, candidate_seed(gen.seed, k)) for k in range(gen.k)]
        expected.append([sampled_step_by_step(model, tokenizer, messages, seed, gen) for seed in seeds])
    assert first["candidates"] == expected
    assert all(len(set(row)) == 2 for row in expected)  # the two candidates of a row differ
    assert call_counts()["gen-test"] == {"new": 4, "cached": 0}
    # A fresh process-level LLM over the same cache: identical candidates, no new model call.
    again = generate_candidates(ds, build_llm(cfg, tmp_path / "cache", role="gen-test"), gen)
    assert again["candidates"] == first["candidates"]
    assert call_counts()["gen-test"] == {"new": 4, "cached": 4}
