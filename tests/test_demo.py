"""`make demo-tiny` (the demo chain on the tiny random-weight stand-ins: the plumbing check) end to end, exactly as
a newcomer runs it, in a fresh copy of the checkout (so runs/ starts empty). Real model: tests/test_real_model.py."""

import json
import os
import shutil
import subprocess

import pytest
from datasets import load_from_disk
from safetensors.torch import load_file

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def demo_checkout(tmp_path_factory):
    """Tracked and untracked-not-ignored files copied with their mtimes (so make sees .venv as up to date)."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    root = tmp_path_factory.mktemp("checkout")
    for name in filter(None, files):
        source = REPO_ROOT / name.decode()
        if source.is_file():
            (root / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name.decode())
    (root / ".venv").symlink_to(REPO_ROOT / ".venv")
    return root


def make_demo_tiny(checkout) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_DIR", "PYTEST"))}
    result = subprocess.run(["make", "demo-tiny"], cwd=checkout, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout


def test_make_demo_builds_trains_evaluates_and_reruns_from_cache(demo_checkout):
    stdout = make_demo_tiny(demo_checkout)
    assert "Demo report: runs/demo-tiny/eval/report.md" in stdout
    demo = demo_checkout / "runs" / "demo-tiny"

    # CULTURAX: three views with three splits each, a card, stats and a manifest that shows no leakage.
    for view in ("dataset", "sft", "dpo"):
        splits = load_from_disk(str(demo / "data" / view))
        assert set(splits) == {"train", "validation", "test"}
        assert len(splits["train"]) > 0
    assert set(load_from_disk(str(demo / "data" / "sft"))["train"].column_names) >= {"messages"}
    assert set(load_from_disk(str(demo / "data" / "dpo"))["train"].column_names) >= {"prompt", "chosen", "rejected"}
    manifest = json.loads((demo / "data" / "manifest.json").read_text())
    assert manifest["leakage"]["cross_split_pairs"] == 0
    assert set(manifest["outputs"]) >= {"sft/train", "dpo/train", "dataset/test"}
    stats = json.loads((demo / "data" / "stats.json").read_text())
    assert set(stats["llm_calls"]) >= {"generator", "judge"}
    assert (demo / "data" / "README.md").read_text().startswith("---\n")

    # SFT then DPO adapters, non-empty, with training results and offline W&B runs.
    for stage in ("sft", "dpo"):
        weights = load_file(str(demo / stage / "adapter_model.safetensors"))
        assert weights and all(tensor.abs().sum() > 0 for name, tensor in weights.items() if "lora_B" in name)
        assert json.loads((demo / stage / "train_results.json").read_text())["train_tokens"] > 0
    assert len(list((demo / "wandb").glob("offline-run-*/run-*.wandb"))) >= 2

    # The re-benchmark: base vs +SFT vs +SFT+DPO, a report that says the models are stand-ins, readable plots.
    results = json.loads((demo / "eval" / "results.json").read_text())
    assert {"models", "metrics", "judges"} <= set(results)
    assert len(results["models"]) == 3
    report = (demo / "eval" / "report.md").read_text()
    assert "plumbing, not alignment quality" in report
    # Judge-free held-out metrics. SFT trained on responses drawn from the same generator as the test split's, so
    # even on random-weight stand-ins it must lower the held-out NLL against the base: the CI's upper bound < 0
    # (measured: -0.0239 nats/token [-0.0289, -0.0183] on 11 responses).
    held = {name: m["heldout"] for name, m in results["metrics"].items()}
    base_held, sft_held, dpo_held = held["tiny-qwen3"], held["tiny-qwen3+sft"], held["tiny-qwen3+sft+dpo"]
    pairwise = {"nll", "n_responses", "n_pairs", "pairwise_preference_accuracy", "pairwise_logp_margin"}
    assert set(base_held) == set(sft_held) == pairwise  # defined for the base too: every change pairs
    assert sft_held["n_responses"] == len(load_from_disk(str(demo / "data" / "sft"))["test"])
    (sft,) = [c for c in results["comparisons"] if c["tuned"] == "tiny-qwen3+sft"]
    nll = sft["deltas"]["heldout_nll"]
    assert nll["ci_high"] < 0 and nll["delta"] < 0 and nll["n"] == sft_held["n_responses"], nll
    assert all({"delta", "ci_low", "ci_high", "n"} <= set(d) for d in sft["deltas"].values())
    # Every change pairs on every item: the DPO view's test pairs, and the 30 fixture helpfulness prompts (a
    # log-probability judge never fails a judgement, so the LC GLM is fitted on all 30, without df_gamed.csv).
    n_pairs = len(load_from_disk(str(demo / "data" / "dpo"))["test"])
    for comparison in results["comparisons"]:
        expected = {"heldout_pairwise_preference_accuracy": n_pairs, "heldout_pairwise_logp_margin": n_pairs,
                    "win_rate_lc": 30}  # fmt: skip
        assert {key: comparison["deltas"][key]["n"] for key in expected} == expected, comparison["tuned"]
    for m in results["metrics"].values():
        assert (m["alpaca_eval_version"], m["win_rate_kind"], m["length_control_glm"], m["length_control_n"]) == (
            "2.0",
            "weighted",
            "length_controlled_minimal",
            30,
        )
    # The DPO model against its own reference, the SFT adapter it continued, found from the DPO run's record.
    assert dpo_held["dpo_reference"] == "tiny-qwen3+sft" and dpo_held["dpo_beta"] == 0.1
    final_step = json.loads((demo / "dpo" / "train_results.json").read_text())["global_step"]
    assert dpo_held["dpo_reward_margin"] is not None and dpo_held["dpo_trl_validation"]["step"] == final_step
    print("demo held-out:", json.dumps(held, indent=1))
    assert "| tiny-qwen3+sft+dpo |" in report and "tiny-qwen3+sft | " in report
    assert "## Held-out, judge-free" in report and "![heldout.png](heldout.png)" in report
    # The lm-eval benchmarks on their fixtures: a table in the report, every task for every model in results.json.
    assert "## Cultural benchmarks" in report and "| CulturalBench-Hard (questions) |" in report
    assert all(len(m["benchmarks"]) == 8 for m in results["metrics"].values())  # 7 tasks + the English alias
    # ... and across languages: a language table and languages.png with 5 languages in 4 scripts (issue 20).
    assert "### Across languages" in report and "![languages.png](languages.png)" in report
    assert "5 languages in 4 scripts (Arabic, CJK, Devanagari, Latin)." in report
    assert sorted(results["metrics"]["tiny-qwen3"]["benchmarks"]["global_mmlu_lite"]) == ["ar", "en", "hi", "zh"]
    assert all(len(c["benchmarks_summary"]) == 3 for c in results["comparisons"])
    pngs = list((demo / "eval").glob("*.png"))
    assert len(pngs) >= 5 and all(png.read_bytes().startswith(PNG_MAGIC) for png in pngs)

    # What DPO optimises: on the pairs it trained on, the DPO model's implicit reward against its SFT reference
    # favours the chosen answers (mean margin > 0), scored by the eval's own held-out code on the train split
    # (measured: +0.0034 over 103 pairs, 75.7% of them positive, 6 standard errors above 0).
    margin = dpo_training_margin(demo_checkout)
    print(f"DPO reward margin vs its SFT reference on the training pairs: {margin:.5f}")
    assert margin > 0, margin

    # A re-run skips every finished stage.
    rerun = make_demo_tiny(demo_checkout)
    assert "-m data_pipeline" not in rerun and "-m train.sft" not in rerun and "-m eval" not in rerun
    assert "Demo report: runs/demo-tiny/eval/report.md" in rerun


def dpo_training_margin(checkout) -> float:
    """Mean β·[(log π − log π_ref)(chosen) − (...)(rejected)] of the demo's DPO model on the DPO train pairs."""
    from eval.config import parse_config
    from eval.heldout import scoring as heldout
    from eval.heldout.dpo_reference import dpo_runs
    from eval.hhh.generation import build_model_llm

    previous = os.getcwd()
    os.chdir(checkout)  # the demo config's paths are relative to its checkout
    try:
        cfg = parse_config(["--config", "configs/eval/demo_tiny.yaml"])
        data = heldout.load_heldout(cfg.heldout_data, "train", None)
        dpo = dpo_runs(cfg)["tiny-qwen3+sft+dpo"]
        specs = {spec.name: spec for spec in cfg.model_specs}
        scores = {
            name: heldout.model_scores(cfg, specs[name], build_model_llm(cfg, specs[name]), data)
            for name in ("tiny-qwen3+sft+dpo", dpo.reference)
        }
    finally:
        os.chdir(previous)
    return float(heldout.dpo_rewards(scores["tiny-qwen3+sft+dpo"], scores[dpo.reference], dpo.beta).mean())
