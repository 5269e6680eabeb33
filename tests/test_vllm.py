"""The in-process `vllm` backend on vLLM's CPU build, held against the transformers backend on the same weights:
greedy answers, seeded sampling, LoRA adapters from real tiny training runs, held-out scoring through prompt
logprobs, judges' option log-probabilities and structured outputs, for both model families (tiny Qwen3, tiny Qwen2
with the real DeepSeek-R1-Distill template), float32.

One engine per family serves the base model and both adapters (LoRA requests); it starts once for that family's tests
(a module fixture parametrised by family, so pytest runs one family's tests, then stops its engine, then the next).
"""

import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from core.chat_templates import chat_prompt
from core.llm import LLMConfig, Sampling, build_llm, share_vllm_engines
from core.llm.structured import reply_object
from data_pipeline.judgements import FACETS, rating_schema, read_structured_judgement
from eval.config import JudgeSpec
from eval.heldout import scoring as heldout
from eval.hhh.judges import Judge
from eval.hhh.structured import read_verdict, verdict_schema
from tests._train_fixtures import BAD, GOOD, PROMPTS
from tests._vllm_fixtures import live_engine_cores, require_vllm

pytestmark = pytest.mark.slow
FAMILIES = ["tiny-qwen3", "tiny-qwen2"]
CONVERSATIONS = [[{"role": "user", "content": p}] for p in PROMPTS[:3]]


def configs(name: str, path, adapters: dict, **kwargs) -> dict[str, LLMConfig]:
    out = {
        tag: LLMConfig(backend="vllm", model=str(path), adapter=adapter and str(adapter), dtype="float32", **kwargs)
        for tag, adapter in adapters.items()
    }
    share_vllm_engines(list(out.values()))
    return out


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, tiny_models, trained_adapters):
    require_vllm()
    name = request.param
    adapters = {"base": None, **trained_adapters[name]}
    kwargs = {"chat_template_kwargs": {"enable_thinking": False}} if name == "tiny-qwen3" else {}
    vllm_cfgs = configs(name, tiny_models[name], adapters, **kwargs)
    vllm_llms = {tag: build_llm(cfg, None, f"vllm:{tag}") for tag, cfg in vllm_cfgs.items()}
    hf_llms = {
        tag: build_llm(
            LLMConfig(model=str(tiny_models[name]), adapter=a and str(a), dtype="float32", **kwargs), None, f"hf:{tag}"
        )
        for tag, a in adapters.items()
    }
    cores = live_engine_cores()
    yield {"name": name, "path": tiny_models[name], "adapters": adapters, "vllm": vllm_llms, "hf": hf_llms} | {
        "kwargs": kwargs,
        "cores": cores,
    }
    for llm in [*vllm_llms.values(), *hf_llms.values()]:
        llm.close()
    assert not set(cores) & set(live_engine_cores()), "the family's engine outlived close()"


def strip_partial_char(text: str) -> str:
    """vLLM holds back the bytes of a trailing incomplete UTF-8 character, which transformers decodes as U+FFFD."""
    return text.rstrip("\ufffd")


def test_base_and_adapters_share_one_engine(family):
    """Three LLMs (base, +SFT, +DPO as LoRA requests) on one engine: one EngineCore for the family."""
    from core.llm import vllm_backend

    engines = {id(llm.backend.engine) for llm in family["vllm"].values()}
    assert len(engines) == 1 and vllm_backend.open_engines() == 1
    assert len(family["cores"]) == 1
    assert family["vllm"]["sft"].backend.lora_request.lora_path == str(family["adapters"]["sft"])


@pytest.mark.parametrize("tag", ["base", "sft"])
def test_greedy_answers_equal_the_transformers_backend(family, tag):
    """Same prompts, same chat template: the same greedy answer and token count (thinking off and on for Qwen3;
    R1-Distill's template always opens a think block). The adapter through a LoRA request as through peft."""
    greedy = Sampling(max_new_tokens=24)
    variants = [family["kwargs"]] + ([{"chat_template_kwargs": {"enable_thinking": True}}] if family["kwargs"] else [])
    for kwargs in variants:
        adapter = family["adapters"][tag]
        cfg = configs(family["name"], family["path"], {tag: adapter, "other": family["adapters"]["sft"]}, **kwargs)[tag]
        ours = build_llm(cfg, None, "vllm:greedy")
        hf_cfg = LLMConfig(model=str(family["path"]), adapter=adapter and str(adapter), dtype="float32", **kwargs)
        theirs = build_llm(hf_cfg, None, "hf:greedy")
        got = [c[0] for c in ours.generate(CONVERSATIONS, greedy)]
        want = [c[0] for c in theirs.generate(CONVERSATIONS, greedy)]
        ours.close()
        theirs.close()
        print(kwargs, [c.text for c in got])
        assert [strip_partial_char(c.text) for c in got] == [strip_partial_char(c.text) for c in want], kwargs
        assert [c.output_tokens for c in got] == [c.output_tokens for c in want]


def test_repetition_penalty_gives_the_transformers_backends_answers(family):
    """The paper's decoding: vLLM's repetition_penalty (SamplingParams) and the transformers backend's give the same
    greedy answers, which the penalty changes (the random-weight models repeat tokens)."""
    penalised, plain = Sampling(max_new_tokens=24, repetition_penalty=1.3), Sampling(max_new_tokens=24)
    got = [strip_partial_char(c[0].text) for c in family["vllm"]["base"].generate(CONVERSATIONS, penalised)]
    want = [strip_partial_char(c[0].text) for c in family["hf"]["base"].generate(CONVERSATIONS, penalised)]
    assert got == want
    assert want != [strip_partial_char(c[0].text) for c in family["hf"]["base"].generate(CONVERSATIONS, plain)]


def test_sampling_is_reproducible_and_seeded_per_conversation(family):
    """Seeded sampling: the same candidates in a second run; candidate 0 of two different prompts differs (a seed
    shared by every conversation gives near-uniform random-weight models the same tokens for any prompt)."""
    sampling = Sampling(temperature=1.0, max_new_tokens=12, seed=7)
    cfg = configs(family["name"], family["path"], {"base": None, "other": family["adapters"]["sft"]},
                  **family["kwargs"])["base"]  # fmt: skip
    first_llm = build_llm(cfg, None, "vllm:sampled")
    again_llm = build_llm(cfg, None, "vllm:sampled-again")  # its own in-memory cache: the model answers again
    first = first_llm.generate(CONVERSATIONS[:2], sampling, n=2)
    again = again_llm.generate(CONVERSATIONS[:2], sampling, n=2)
    first_llm.close()
    again_llm.close()
    assert [[c.text for c in row] for row in first] == [[c.text for c in row] for row in again]
    assert not any(c.cached for row in again for c in row)
    assert first[0][0].text != first[1][0].text  # two prompts, candidate 0
    assert first[0][0].text != first[0][1].text  # one prompt, two candidates
    assert all(c.latency_s is not None and 0 < c.latency_s and c.wall_s > 0 for row in first for c in row)


def training_sequences(tokenizer, kwargs: dict) -> list[list[int]]:
    """Chat-rendered prompt + answer token ids, the data the adapters trained on (and a rejected answer)."""
    texts = []
    for prompt, answer in ((PROMPTS[0], GOOD.format(p=PROMPTS[0])), (PROMPTS[1], BAD.format(p=PROMPTS[1]))):
        messages = [{"role": "user", "content": prompt}]
        texts.append(chat_prompt(tokenizer, messages, kwargs.get("chat_template_kwargs", {})) + answer)
    return [tokenizer.encode(text, add_special_tokens=False) for text in texts]


@torch.inference_mode()
def peft_token_logprobs(path, adapter, sequences) -> list[list[float]]:
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    out = []
    for ids in sequences:
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)
        out.append([float(logp[k - 1, ids[k]]) for k in range(1, len(ids))])
    return out


def test_lora_teacher_forced_loglikelihoods_equal_peft_and_differ_from_the_base(family):
    """SFT and DPO adapters of a real tiny run, through vLLM LoRA requests: every token's log-likelihood within 1e-3
    of transformers + peft, and not the base model's. On the CPU build the LoRA engine scores one sequence per call
    (see test_cpu_lora_kernel_batches_one_request_only)."""
    vllm_llms = family["vllm"]
    sequences = training_sequences(vllm_llms["base"].backend.tokenizer, family["kwargs"])
    base = peft_token_logprobs(family["path"], None, sequences)
    assert vllm_llms["sft"].backend._engine.one_at_a_time  # vLLM's CPU build: the path this test runs
    for tag in ("sft", "dpo"):
        got = [row[1:] for row in vllm_llms[tag].backend.prompt_logprobs(sequences)]
        want = peft_token_logprobs(family["path"], family["adapters"][tag], sequences)
        worst = max(abs(a - b) for g, w in zip(got, want, strict=True) for a, b in zip(g, w, strict=True))
        moved = max(abs(a - b) for g, w in zip(got, base, strict=True) for a, b in zip(g, w, strict=True))
        print(f"{family['name']} {tag}: max |vLLM - peft| = {worst:.2e} per token; max |adapter - base| = {moved:.3f}")
        assert worst < 1e-3 and moved > 1e-2


def heldout_data() -> dict:
    answers = [(p, GOOD.format(p=p), BAD.format(p=p)) for p in PROMPTS[:4]]
    sft = [([{"role": "user", "content": p}], [{"role": "assistant", "content": good}]) for p, good, _ in answers]
    dpo = [([{"role": "user", "content": p}], [{"role": "assistant", "content": g}], [{"role": "assistant",
            "content": b}]) for p, g, b in answers]  # fmt: skip
    return {"sft": sft, "dpo": dpo}


@pytest.mark.parametrize("tag", ["base", "sft"])
def test_heldout_scores_equal_the_transformers_path_in_any_order(family, tag):
    """score_model through vLLM prompt logprobs vs batched transformers forward passes: NLL per token
    within 1e-3, the same scored tokens (through the same end-of-turn token), the same values for the requests in
    reverse order and after generation has filled the prefix cache (vLLM skips it for prompt logprobs)."""
    data = heldout_data()
    kwargs = family["kwargs"].get("chat_template_kwargs", {})
    ours, theirs = family["vllm"][tag].backend, family["hf"][tag].backend
    assert ours.eos_ids == theirs.eos_ids
    got = heldout.score_model(ours, data, kwargs, 2048, "vllm")
    want = heldout.score_model(theirs, data, kwargs, 2048, "hf")
    assert got["tokens"].tolist() == want["tokens"].tolist()
    per_token = abs(got["nll_sum"] - want["nll_sum"]) / got["tokens"]
    nll = {name: s["nll_sum"].sum() / s["tokens"].sum() for name, s in (("vLLM", got), ("transformers", want))}
    print(f"{family['name']} {tag}: NLL/token {nll}; max difference per response {per_token.max():.2e}")
    assert per_token.max() < 1e-3
    for side in ("chosen", "rejected"):  # summed over a pair's response: 1e-3 per token of it
        lengths = [len(heldout.encode_pair(ours.tokenizer, row[0], row[1 if side == "chosen" else 2], kwargs,
                                           ours.eos_ids)[1]) for row in data["dpo"]]  # fmt: skip
        assert (abs(got[side] - want[side]) < 1e-3 * torch.tensor(lengths).numpy()).all(), side
    family["vllm"][tag].generate(CONVERSATIONS, Sampling(max_new_tokens=4))  # fills the prefix cache
    reverse = {"sft": data["sft"][::-1], "dpo": data["dpo"][::-1]}
    again = heldout.score_model(ours, reverse, kwargs, 2048, "vllm")
    assert again["nll_sum"][::-1].tolist() == got["nll_sum"].tolist()
    assert again["chosen"][::-1].tolist() == got["chosen"].tolist()


def test_judge_option_logprobs_equal_the_transformers_backend(family):
    """next_token_logprobs (the in-process logprob judge and classifier): every option within 1e-4, same argmax."""
    options = ["Yes", "No", "A", "B"]
    for tag in ("base", "dpo"):
        got = family["vllm"][tag].next_token_logprobs(CONVERSATIONS, options)
        want = family["hf"][tag].next_token_logprobs(CONVERSATIONS, options)
        for g, w in zip(got, want, strict=True):
            assert max(abs(g[o] - w[o]) for o in options) < 1e-4, (tag, g, w)
            assert max(g, key=g.get) == max(w, key=w.get)
            assert all(math.isfinite(v) for v in g.values())


def test_structured_output_answers_the_schema_every_time(family):
    """vLLM's structured outputs in process (xgrammar, compact JSON): every reply of the eval's verdict schema and of
    the data pipeline's rating schema is the schema's object, greedy and sampled, base model and adapter; the eval's
    structured judge fails no judgement."""
    pairwise = ["A", "B", "tie"]
    for tag in ("base", "sft"):
        llm = family["vllm"][tag]
        for sampling in (Sampling(max_new_tokens=128), Sampling(temperature=1.0, max_new_tokens=128, seed=5)):
            replies = [
                c[0].text for c in llm.generate(CONVERSATIONS, sampling, json_schema=verdict_schema(pairwise, 40))
            ]
            print(family["name"], tag, replies)  # the judgements exactly as the backend returned them
            assert all(read_verdict(r, pairwise)[0] in pairwise and len(reply_object(r)["reason"]) <= 40
                       for r in replies), replies  # fmt: skip
        ratings = llm.generate(CONVERSATIONS, Sampling(max_new_tokens=128), json_schema=rating_schema(5, 40))
        assert [sorted(read_structured_judgement(r[0].text, 5)) for r in ratings] == [
            sorted([*FACETS, "rationale"])
        ] * 3
    spec = JudgeSpec(
        backend="vllm", model=str(family["path"]), mode="structured", reason_max_chars=40, max_new_tokens=128
    )
    judge = Judge("safety", spec, family["vllm"]["base"])
    labels = judge([{"prompt": p, "response": GOOD.format(p=p)} for p in PROMPTS[:4]])
    assert judge.failed == 0 and set(labels) <= {"safe", "unsafe"}


def test_cpu_lora_kernel_batches_one_request_only():
    """Why the CPU build scores LoRA prompt logprobs one request at a time: its kernel (bgmv_shrink, what
    vllm/lora/punica_wrapper/punica_cpu.py's add_lora_logits calls with one adapter index per request) needs one
    index per row, and prompt logprobs pass a row per token. One request's index broadcasts over its rows (exact: the
    LoRA test above); two requests raise the einsum error that kills the engine. When vLLM fixes this, this test
    fails: then batch them (core.llm.vllm_backend.batches_prompt_logprobs)."""
    require_vllm()
    from vllm.lora.ops.torch_ops import bgmv_shrink

    rows, rank, hidden = 7, 4, 16
    x = torch.randn(rows, hidden)
    lora_a = torch.randn(2, 1, rank, hidden)  # two adapters' A matrices, as vLLM stacks them
    one = torch.zeros(rows, rank)
    bgmv_shrink(x, lora_a, one, torch.tensor([1]), 1.0)
    torch.testing.assert_close(one, x @ lora_a[1, 0].T)
    with pytest.raises(RuntimeError, match=r"einsum\(\): subscript b has size 2"):
        bgmv_shrink(x, lora_a, torch.zeros(rows, rank), torch.tensor([0, 1]), 1.0)
