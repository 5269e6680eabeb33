"""`python -m eval` with `backend: vllm` (base + SFT + DPO adapters of a real tiny run) against the same config with
`backend: transformers`: the same responses, the same held-out NLL (within 1e-3 per token), the same per-question
benchmark outcomes (lm-eval's `vllm` model with LoRA requests vs its `hf` model with `peft=`), and never two vLLM
engines at once: one engine serves the base and its adapters, then lm-eval's, each stopped before the next starts.
"""

import json
import time

import numpy as np
import pytest
import yaml

from eval import evaluate
from eval.__main__ import main as eval_main
from eval.config import BENCHMARK_TASKS
from tests._train_fixtures import write_training_data
from tests._vllm_fixtures import live_engine_cores, require_vllm
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


def demo_benchmarks() -> dict:
    """The demo's benchmarks block (every task, its multilingual slice: 5 languages in 4 scripts), paths absolute."""
    block = yaml.safe_load((REPO_ROOT / "configs" / "eval" / "demo_tiny.yaml").read_text())["benchmarks"]
    block["data"] = {
        task: {lang: str(REPO_ROOT / path) for lang, path in files.items()}
        if isinstance(files, dict)
        else str(REPO_ROOT / files)
        for task, files in block["data"].items()
    }
    return block | {"batch_size": 16}


def eval_config(path, backend, tiny_models, adapters, data, out) -> str:
    base = str(tiny_models["tiny-qwen3"])
    judge = {"backend": "transformers", "model": base, "mode": "logprobs", "dtype": "float32"}
    cfg = {
        "output_dir": str(out),
        "cache_dir": str(out / "cache"),
        "report_to": "none",
        "backend": backend,
        "dtype": "float32",
        "chat_template_kwargs": {"enable_thinking": False},
        "max_new_tokens": 12,
        "max_prompts_per_set": 3,
        "heldout_data": str(data),
        "bootstrap_resamples": 50,
        "models": [
            {"name": "base", "model": base},
            {"name": "sft", "model": base, "adapter": str(adapters["sft"])},
            {"name": "dpo", "model": base, "adapter": str(adapters["dpo"]), "baseline": "base"},
        ],
        "judges": {"default": judge | {"chat_template_kwargs": {"enable_thinking": False}}},
        "benchmarks": demo_benchmarks(),
    }
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.fixture(scope="module")
def runs(tiny_models, trained_adapters, tmp_path_factory):
    require_vllm()
    import vllm

    root = tmp_path_factory.mktemp("vllm_eval")
    data = write_training_data(root / "data")
    adapters = trained_adapters["tiny-qwen3"]
    before = set(live_engine_cores())
    alive_at_start: list[list[int]] = []
    original = vllm.LLM.__init__

    def counting_init(self, *args, **kwargs):  # every engine start, ours and lm-eval's
        alive_at_start.append(sorted(set(live_engine_cores()) - before))
        original(self, *args, **kwargs)

    generate_responses = evaluate.generate_responses
    calls: list[dict] = []  # every generate_responses call: backend, model, its records, its wall time

    def timed_generate_responses(llm, *args):
        began = time.perf_counter()
        records = generate_responses(llm, *args)
        wall_s = time.perf_counter() - began
        calls.append(
            {"backend": backend, "model": llm.role.removeprefix("model:"), "records": records, "wall_s": wall_s}
        )
        return records

    results = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(vllm.LLM, "__init__", counting_init)
        patch.setattr(evaluate, "generate_responses", timed_generate_responses)
        for backend in ("vllm", "transformers"):
            config = eval_config(root / f"{backend}.yaml", backend, tiny_models, adapters, data, root / backend)
            eval_main(["--config", config])
            results[backend] = json.loads((root / backend / "results.json").read_text())
            results[backend]["samples"] = {  # samples/<model>.jsonl: every response and benchmark question
                name: [json.loads(line) for line in (root / backend / "samples" / f"{name}.jsonl").open()]
                for name in ("base", "sft", "dpo")
            }
    left = set(live_engine_cores()) - before
    return {"results": results, "alive_at_start": alive_at_start, "left": left, "generate_calls": calls}


def test_one_engine_at_a_time_and_none_left(runs):
    """Two engine starts (ours for the three models, lm-eval's for the benchmarks), each with no other EngineCore
    of the eval alive, and none alive after the eval."""
    assert runs["alive_at_start"] == [[], []]
    assert not runs["left"]


def test_responses_equal_the_transformers_backend(runs):
    got, want = (runs["results"][b]["samples"] for b in ("vllm", "transformers"))
    for model in ("base", "sft", "dpo"):
        generated = [(s["set"], s["id"], s["response"].rstrip("\ufffd")) for s in got[model]
                     if not s["set"].startswith("benchmark/")]  # fmt: skip
        expected = [(s["set"], s["id"], s["response"].rstrip("\ufffd")) for s in want[model]
                    if not s["set"].startswith("benchmark/")]  # fmt: skip
        assert generated == expected and len(generated) == 9, model


def test_heldout_nll_equals_the_transformers_path(runs):
    for model in ("base", "sft", "dpo"):
        got, want = (runs["results"][b]["metrics"][model]["heldout"] for b in ("vllm", "transformers"))
        print(f"{model}: held-out NLL vLLM {got['nll']:.6f} transformers {want['nll']:.6f}")
        assert abs(got["nll"] - want["nll"]) < 1e-3 and got["n_responses"] == want["n_responses"] == 2
    assert (
        runs["results"]["vllm"]["metrics"]["sft"]["heldout"]["nll"]
        != runs["results"]["vllm"]["metrics"]["base"]["heldout"]["nll"]
    )


def test_benchmark_outcomes_per_question_equal_lm_evals_hf_model(runs):
    """lm-eval's vllm model (adapters as LoRA requests) and its hf model (peft=): the same outcome on every fixture
    question of every task, for the base and both adapters."""
    got, want = (runs["results"][b]["samples"] for b in ("vllm", "transformers"))
    for model in ("base", "sft", "dpo"):
        outcomes = [{(s["set"], s["id"]): (s["correct"], s["response"]) for s in r[model] if "correct" in s}
                    for r in (got, want)]  # fmt: skip
        assert outcomes[0] == outcomes[1] and len(outcomes[0]) > 0, model

    def accuracies(entry: dict) -> dict:  # {language: accuracy} for a multilingual benchmark, else the accuracy
        return entry["accuracy"] if "accuracy" in entry else {lang: e["accuracy"] for lang, e in entry.items()}

    for task in BENCHMARK_TASKS:
        accs = [accuracies(runs["results"][b]["metrics"]["sft"]["benchmarks"][task]) for b in ("vllm", "transformers")]
        assert accs[0] == accs[1], task


def test_latency_is_per_request_with_vllm_and_the_report_says_so(runs):
    """results.json's efficiency figures are those of the per-response records; with vLLM each response's latency is
    its own request's (arrival to last token, inside its engine call), with transformers its static batch's."""
    eff = {b: runs["results"][b]["metrics"]["base"]["efficiency"] for b in ("vllm", "transformers")}
    assert eff["vllm"]["latency_per"] == "request" and eff["transformers"]["latency_per"] == "batch"
    for backend in ("vllm", "transformers"):
        calls = [c for c in runs["generate_calls"] if (c["backend"], c["model"]) == (backend, "base")]
        records = [r for call in calls for r in call["records"]]
        assert len(calls) == 3 and len(records) == eff[backend]["responses"] == 9  # 3 sets of 3 prompts, none cached
        assert not any(r["cached"] for r in records)
        latency, tokens, wall = (
            np.array([r[key] for r in records]) for key in ("latency_s", "output_tokens", "wall_s")
        )
        assert eff[backend]["latency_s_per_response"] == pytest.approx(latency.mean(), rel=1e-12)
        assert eff[backend]["latency_s_median"] == pytest.approx(np.median(latency), rel=1e-12)
        assert eff[backend]["output_tokens_per_response"] == pytest.approx(tokens.mean(), rel=1e-12)
        assert eff[backend]["tokens_per_s"] == pytest.approx(tokens.sum() / wall.sum(), rel=1e-12)
        for call in calls:  # one model call per set: its 3 responses share its wall time equally
            shares, latencies = [r["wall_s"] for r in call["records"]], [r["latency_s"] for r in call["records"]]
            assert len(set(shares)) == 1 and 0 < sum(shares) <= call["wall_s"]
            if backend == "vllm":  # each request's own time, within the engine call; requests arrive one by one
                assert 0 < max(latencies) <= sum(shares) and len(set(latencies)) == 3
            else:  # one static batch of 3: each response's latency is the batch's, the sum of its shares
                assert latencies == pytest.approx([sum(shares)] * 3, rel=1e-12)
