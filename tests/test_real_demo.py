"""`make demo`'s chain on the real model (SmolLM2-135M-Instruct), on a smaller slice to fit CI: the same commands and
configs as the Makefile, with a few overrides. It asserts only what must hold for a real model: SFT on CULTURAX lowers
the held-out NLL of CULTURAX's test answers (the whole CI below 0), DPO favours the chosen answers of the pairs it
trained on, the answers side by side are real text that tuning changed, and the transformers and vLLM backends agree
on the same weights (greedy text and held-out NLL), stopping at <|im_end|>."""

import json

import numpy as np
import pytest
import yaml

from core.chat_templates import chat_prompt
from core.llm import LLMConfig, Sampling, build_llm, share_vllm_engines
from tests._train_fixtures import run_module
from tests._vllm_fixtures import require_vllm
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow
RECIPES = "configs/train/smollm2-135m-instruct"
# `make demo`: 72 seed prompts, 16 expansion calls, answers of up to 96 new tokens (here 64, in data and eval)
SLICE = ["--sources.0.limit", "24", "--expand.max_calls", "2", "--generate.max_new_tokens", "64"]
MODELS = ("smollm2", "smollm2+sft", "smollm2+sft+dpo")


@pytest.fixture(scope="module")
def chain(smollm2, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("real_demo")
    # Both cores: a 135M model's matmuls gain from a second thread (the suite's 1 thread suits the tiny models).
    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(root), "OMP_NUM_THREADS": "2"}
    data, sft, dpo = root / "data", root / "sft", root / "dpo"
    run_module(["-m", "data_pipeline", "--config", "configs/data/demo.yaml", "--output_dir", str(data), *SLICE],
               env=env, timeout=1200)  # fmt: skip
    run_module(["-m", "train.sft", "--config", f"{RECIPES}/sft_lora.yaml", "--dataset_name", str(data / "sft"),
                "--output_dir", str(sft), "--report_to", "none"], env=env, timeout=900)  # fmt: skip
    run_module(["-m", "train.dpo", "--config", f"{RECIPES}/dpo_lora.yaml", "--dataset_name", str(data / "dpo"),
                "--sft_adapter", str(sft), "--output_dir", str(dpo), "--report_to", "none"],
               env=env, timeout=900)  # fmt: skip
    config = yaml.safe_load((REPO_ROOT / "configs" / "eval" / "demo.yaml").read_text())
    config.update(output_dir=str(root / "eval"), cache_dir=str(root / "cache"), report_to="none", max_new_tokens=64,
                  culturax_dataset=str(data / "dataset"), heldout_data=str(data), max_prompts_per_set=2)  # fmt: skip
    del config["benchmarks"]  # `make demo` runs them; here they would only cost CI minutes
    for model in config["models"]:
        if "adapter" in model:
            model["adapter"] = str(dpo if model["adapter"].endswith("dpo") else sft)
            model["train_runs"] = [str(sft)] + ([str(dpo)] if model["adapter"] == str(dpo) else [])
    (root / "eval.yaml").write_text(yaml.safe_dump(config))
    run_module(["-m", "eval", "--config", str(root / "eval.yaml")], env=env, timeout=1500)
    results = json.loads((root / "eval" / "results.json").read_text())
    return {"root": root, "data": data, "sft": sft, "dpo": dpo, "results": results, "eval_config": root / "eval.yaml"}


def test_sft_lowers_the_heldout_nll_of_culturax_answers(chain):
    (sft,) = [c for c in chain["results"]["comparisons"] if c["tuned"] == "smollm2+sft"]
    nll = sft["deltas"]["heldout_nll"]
    print("base -> +SFT held-out NLL/token:", nll)
    assert nll["ci_high"] < 0 and nll["n"] == chain["results"]["metrics"]["smollm2+sft"]["heldout"]["n_responses"]


def test_dpo_favours_the_chosen_answers_of_its_training_pairs(chain, monkeypatch):
    """DPO's implicit reward against its SFT reference (the eval's own held-out code), on the pairs it trained on."""
    from eval.config import parse_config
    from eval.heldout import scoring as heldout
    from eval.heldout.dpo_reference import dpo_runs
    from eval.hhh.generation import build_model_llm

    monkeypatch.chdir(REPO_ROOT)  # the demo config's model path is relative to the checkout
    cfg = parse_config(["--config", str(chain["eval_config"])])
    data = heldout.load_heldout(cfg.heldout_data, "train", None)
    dpo = dpo_runs(cfg)["smollm2+sft+dpo"]
    specs = {spec.name: spec for spec in cfg.model_specs}
    scores = {}
    for name in ("smollm2+sft+dpo", dpo.reference):
        llm = build_model_llm(cfg, specs[name])
        scores[name] = heldout.model_scores(cfg, specs[name], llm, data)
        llm.close()
    rewards = heldout.dpo_rewards(scores["smollm2+sft+dpo"], scores[dpo.reference], dpo.beta)
    print(f"DPO reward accuracy on its {len(rewards)} training pairs: {100 * np.mean(rewards > 0):.1f}%")
    assert dpo.reference == "smollm2+sft" and np.mean(rewards > 0) > 0.5


def test_answers_side_by_side_are_real_text_that_tuning_changed(chain):
    rows = chain["results"]["side_by_side"]
    assert [row["set"] for row in rows] == ["culturax"] * 5 + ["helpfulness", "harmlessness", "honesty"]
    for row in rows:
        assert set(row["answers"]) == set(MODELS)
        assert all(text.strip() for text in row["answers"].values()), row  # decoded text (a cut one may end mid-word)
    assert any(len(set(row["answers"].values())) > 1 for row in rows)
    report = (chain["root"] / "eval" / "report.md").read_text()
    assert "## Answers side by side" in report


def test_transformers_and_vllm_agree_on_the_real_model_and_stop_at_im_end(chain, smollm2):
    """Same weights, same dtype (float32): identical greedy answers to 5 prompts and held-out NLL within 1e-3 per
    token, for the base model and with each adapter. An answer that ends before the token cap ended at <|im_end|>:
    transformers' own greedy `generate` on the same prompt ends with that token, after exactly the answer's tokens."""
    require_vllm()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from eval.heldout import scoring as heldout

    prompts = [[{"role": "user", "content": text}] for text in (
        "In one sentence, what is Diwali?", "Name one dish eaten at Nowruz.", "What is kente cloth?",
        "Where is the Day of the Dead celebrated?", "Reply with one word: is Japan in Asia?",
    )]  # fmt: skip
    cap = 64
    greedy = Sampling(temperature=0.0, max_new_tokens=cap)
    data = heldout.load_heldout(str(chain["data"]), "test", 6)
    configs = {
        (backend, adapter): LLMConfig(backend=backend, model=str(smollm2), adapter=adapter, dtype="float32")
        for backend in ("transformers", "vllm")
        for adapter in (None, str(chain["sft"]), str(chain["dpo"]))
    }
    share_vllm_engines(list(configs.values()))  # one engine: the base and both adapters as LoRA requests
    llms = {key: build_llm(cfg, None, role=f"agree-{key[0]}") for key, cfg in configs.items()}
    out = {}
    try:
        for key, llm in llms.items():
            answers = [candidates[0] for candidates in llm.generate(prompts, greedy)]
            nll = heldout.score_model(llm.backend, data, {}, 1024, key[0])
            out[key] = ([a.text for a in answers], [a.output_tokens for a in answers], nll)
    finally:
        for llm in llms.values():
            llm.close()  # the last vLLM user shuts the shared engine down
    for adapter in (None, str(chain["sft"]), str(chain["dpo"])):
        (t_text, t_tokens, t_nll), (v_text, v_tokens, v_nll) = out[("transformers", adapter)], out[("vllm", adapter)]
        assert v_text == t_text and v_tokens == t_tokens, adapter
        assert any(n < cap for n in t_tokens), adapter  # "Reply with one word" ends early
        assert not any("<|im_end|>" in text for text in t_text), adapter
        per_token = [float(s["nll_sum"].sum() / s["tokens"].sum()) for s in (t_nll, v_nll)]
        print(f"held-out NLL/token {adapter or 'base'}: transformers {per_token[0]:.6f} vllm {per_token[1]:.6f}")
        assert abs(per_token[0] - per_token[1]) < 1e-3

    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    model = AutoModelForCausalLM.from_pretrained(smollm2, dtype=torch.float32)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    texts, counts = out[("transformers", None)][:2]
    stopped = [(p, text, n) for p, text, n in zip(prompts, texts, counts, strict=True) if n < cap]
    print(f"base: {len(stopped)} of 5 answers ended before the cap; tokens {counts}")
    assert stopped  # "Reply with one word" ends early
    for messages, text, n in stopped:
        prompt = tokenizer(chat_prompt(tokenizer, messages, {}), add_special_tokens=False, return_tensors="pt")
        ids = model.generate(**prompt, do_sample=False, max_new_tokens=cap, eos_token_id=im_end)[0]
        answer = ids[prompt["input_ids"].shape[1] :].tolist()
        assert answer[-1] == im_end and len(answer) == n and "<|im_end|>" not in text
        assert tokenizer.decode(answer[:-1], skip_special_tokens=True).strip() == text.strip()
