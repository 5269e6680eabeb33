"""End to end: the seed-only pipeline, the LLM half on tiny models, a faulty local OpenAI server, kill -9 and resume."""

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from datasets import Dataset, DatasetDict, load_from_disk

from core.llm.local_server import Faults, LocalOpenAIServer
from data_pipeline.config import ConfigError, parse_config
from data_pipeline.importers import SEED_PATH
from data_pipeline.outputs import save_datasets
from data_pipeline.pipeline import run_pipeline
from tests.conftest import REPO_ROOT

LLM_STAGES = ["import", "classify", "expand", "dedup", "contamination", "split", "generate", "judge", "views"]
MANIFEST_KEYS = {"config", "seed", "versions", "inputs", "outputs", "leakage", "created_at"}


def run(config: dict, tmp_path: Path, *overrides: str) -> dict:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return run_pipeline(parse_config(["--config", str(path), *overrides]))


def subset(tmp_path: Path, every: int = 16) -> tuple[str, str]:
    """Every n-th seed prompt (a few subdomains, ~25 rows) and an eval file that repeats one of them nearly."""
    seeds = [json.loads(line) for line in SEED_PATH.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = seeds[::every]
    source = tmp_path / "subset.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    eval_file = tmp_path / "eval.txt"
    eval_file.write_text(rows[3]["prompt"].rstrip("?") + ", please?\n")
    return str(source), str(eval_file)


def read_outputs(output_dir: Path) -> tuple[dict, dict, dict]:
    stats = json.loads((output_dir / "stats.json").read_text())
    manifest = json.loads((output_dir / "manifest.json").read_text())
    dataset = {view: {s: load_from_disk(str(output_dir / view))[s].to_list() for s in ("train", "validation", "test")}
               for view in ("dataset", "sft", "dpo") if (output_dir / view).exists()}  # fmt: skip
    return stats, manifest, dataset


def test_seed_only_pipeline_end_to_end(tmp_path):
    out = tmp_path / "out"
    stats = run_pipeline(parse_config(["--config", str(REPO_ROOT / "configs/data/seed_only.yaml"),
                                       "--output_dir", str(out)]))  # fmt: skip
    _, manifest, data = read_outputs(out)
    assert set(data) == {"dataset"}
    rows = [row for split in data["dataset"].values() for row in split]
    assert len(rows) == stats["rows_per_stage"]["dedup"] == sum(stats["split"].values())
    assert len(rows) > 300 and len({row["id"] for row in rows}) == len(rows)
    assert stats["import"]["rows"] == len(SEED_PATH.read_text().splitlines())
    assert stats["classify"]["kept_importer_labels"] == stats["import"]["rows"]
    assert stats["llm_calls"] == {} and stats["leakage"]["pairs"] == 0
    assert MANIFEST_KEYS <= set(manifest)
    assert manifest["inputs"][str(SEED_PATH)] == hashlib.sha256(SEED_PATH.read_bytes()).hexdigest()
    for split in ("train", "validation", "test"):
        # The digest of the split's arrow files in name order (`cat data-*.arrow | sha256sum`), computed by hand.
        arrows = sorted((out / "dataset" / split).glob("data-*.arrow"))
        assert (
            arrows
            and manifest["outputs"][f"dataset/{split}"]
            == hashlib.sha256(b"".join(path.read_bytes() for path in arrows)).hexdigest()
        )
    assert manifest["leakage"] == {"cross_split_pairs": 0, "cross_split_rate": 0.0}
    card = (out / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    assert header["configs"][0]["config_name"] == "dataset"
    assert {s["name"]: s["num_examples"] for s in header["dataset_info"][0]["splits"]} == stats["split"]
    assert "| 15 | Festivals |" in card


def tiny_config(tiny_models, tmp_path) -> dict:
    source, eval_file = subset(tmp_path)
    model = {"backend": "transformers", "model": str(tiny_models["tiny-qwen3"]), "dtype": "float32",
             "batch_size": 16, "chat_template_kwargs": {"enable_thinking": False}}  # fmt: skip
    return {
        "output_dir": str(tmp_path / "out"),
        "stages": LLM_STAGES,
        "sources": [{"format": "jsonl", "path": source}],
        "eval_prompts": [eval_file],
        "llm": {role: model for role in ("classifier", "expander", "generator", "judge")},
        "classify": {"method": "llm", "labels": "release"},
        "expand": {"min_per_subdomain": 3, "per_round": 2, "max_calls": 8, "max_new_tokens": 16},
        "generate": {"k": 2, "max_new_tokens": 8},
        "judge": {
            "mode": "logprob",
            "max_iterations": 1,
            "critique_max_new_tokens": 4,
            "helpful_threshold": 2.5,
            "harmless_threshold": 2.5,
            "honest_threshold": 2.5,
            "min_margin": 0.0,
        },  # fmt: skip
    }


@pytest.mark.slow
def test_llm_half_on_tiny_models_then_a_rerun_makes_zero_new_calls(tiny_models, tmp_path):
    config = tiny_config(tiny_models, tmp_path)
    first = run(config, tmp_path)
    out = Path(config["output_dir"])
    _, manifest, data = read_outputs(out)
    calls = first["llm_calls"]
    assert set(calls) == {"classifier", "expander", "generator", "judge"} and all(c["new"] > 0 for c in calls.values())
    assert first["classify"]["classifier"].startswith("llm-logprob:transformers:")
    assert first["expand"]["calls"] == 8 and first["contamination"]["eval_prompts"] == 1
    assert first["generate"]["candidates"] == 2 * first["generate"]["prompts"]
    sft_rows = sum(len(split) for split in data["sft"].values())
    assert sft_rows > 0 and sft_rows == sum(len(split) for split in data["dataset"].values())
    assert all(row["messages"][0]["role"] == "user" for split in data["sft"].values() for row in split)
    assert set(manifest["outputs"]) == {f"{v}/{s}" for v in ("dataset", "sft", "dpo") for s in data["dataset"]}
    card = (out / "README.md").read_text()
    assert "## Two-stage HHH rejection sampling (per subdomain)" in card
    tally = next(iter(first["judge"]["per_subdomain"].values()))
    assert f"| {tally['candidates']} | {tally['stage1_pass_rate']:.2f} | {tally['recovered_stage2']} |" in card

    second = run(config, tmp_path)
    assert all(c["new"] == 0 and c["cached"] > 0 for c in second["llm_calls"].values()), second["llm_calls"]
    assert {role: c["cached"] for role, c in second["llm_calls"].items()} == {
        role: c["new"] + c["cached"] for role, c in calls.items()
    }
    _, manifest_again, data_again = read_outputs(out)
    assert data_again == data and manifest_again["outputs"] == manifest["outputs"]
    assert {k: v for k, v in second.items() if k != "llm_calls"} == {k: v for k, v in first.items() if k != "llm_calls"}


PLACES = ["Kyoto", "Oaxaca", "Kerala", "Lagos", "Tbilisi", "Cusco", "Hanoi", "Fez", "Bergen", "Tonga", "Sardinia"]
ASPECTS = ["etiquette", "history", "materials", "seasonal calendar", "role of elders", "regional variants"]


def scripted_reply(messages: list[dict], params: dict) -> str:
    """Deterministic replies for the expander, generator and judge, computed from the request alone."""
    text = messages[-1]["content"]
    digest = int(hashlib.sha256(json.dumps([messages, params["seed"]]).encode()).hexdigest()[:8], 16)
    if "Write one new prompt" in text:
        name = re.search(r"Cultural subdomain: (.+?) \(UNESCO", text).group(1).lower()
        place, aspect = PLACES[digest % len(PLACES)], ASPECTS[(digest // 11) % len(ASPECTS)]
        return f"What is the {aspect} of {name} in {place}, and how do local people describe it?"
    if "impartial judge" in text:
        helpful = 2 + digest % 4  # 2..5: about half the candidates fail the threshold of 4 and go to stage 2
        return json.dumps({"rationale": f"scripted verdict {digest % 97}", "helpful": helpful, "harmless": 5,
                           "honest": 4})  # fmt: skip
    return f"A culturally grounded answer number {digest % 100_000} that names its context."


def server_config(base_url: str, tmp_path: Path, name: str) -> dict:
    source, eval_file = subset(tmp_path)
    model = {"backend": "openai", "model": "scripted", "base_url": base_url, "max_concurrency": 4,
             "max_retries": 8, "timeout_s": 10}  # fmt: skip
    return {
        "output_dir": str(tmp_path / name),
        "stages": LLM_STAGES,
        "sources": [{"format": "jsonl", "path": source}],
        "eval_prompts": [eval_file],
        "llm": {role: model for role in ("expander", "generator", "judge")},
        "expand": {"min_per_subdomain": 4, "per_round": 2, "max_calls": 24},
        "generate": {"k": 2},
        "judge": {"mode": "generative", "max_iterations": 2},
    }


@pytest.mark.slow
def test_faulty_openai_server_run_finishes_with_no_duplicate_rows(tmp_path, monkeypatch):
    secret = "sk-local-test-secret-8731"
    monkeypatch.setenv("LOCAL_SERVER_KEY", secret)
    faults = Faults(rate_limit=2, server_error=2, drop=2, retry_after_s=0.05, server_error_rate=0.03, drop_rate=0.03)
    with LocalOpenAIServer(scripted_reply, faults=faults, api_key=secret) as server:
        config = server_config(server.base_url, tmp_path, "out")
        for role in config["llm"].values():
            role["api_key_env"] = "LOCAL_SERVER_KEY"  # the server answers 401 without it
        stats = run(config, tmp_path)
        attempts, completed = server.attempts(), server.completed_calls()
    _, _, data = read_outputs(Path(config["output_dir"]))
    rows = [row for split in data["dataset"].values() for row in split]
    assert rows and len({row["id"] for row in rows}) == len(rows)
    assert len({row["prompt"] for row in rows}) == len(rows)
    for view in ("sft", "dpo"):
        ids = [row["id"] for split in data[view].values() for row in split]
        assert len(set(ids)) == len(ids)
    assert sum(attempts.values()) > sum(completed.values())  # faults were injected and retried
    assert max(completed.values()) == 1  # every distinct call answered once: retries repeat only failed attempts
    assert stats["expand"]["accepted"] > 0 and stats["judge"]["total"]["recovered_stage2"] > 0
    # The key was used (no 401s) and never written anywhere: manifest, stats, card, cache.
    assert not [r for r in server.records if r.outcome == "http_401"]
    written = [p for p in Path(config["output_dir"]).rglob("*") if p.is_file() and p.suffix != ".arrow"]
    assert written and not [p for p in written if secret.encode() in p.read_bytes()]


def counting_generations(generated: list):
    """scripted_reply that appends to `generated` for every generation call (not judge or expander calls)."""

    def reply(messages, params):
        if "impartial judge" not in messages[-1]["content"] and "Write one new prompt" not in messages[-1]["content"]:
            generated.append(1)
        return scripted_reply(messages, params)

    return reply


def kill_9_mid_generation(config_path: Path, generated: list, *overrides: str, calls: int = 12) -> None:
    """Run `python -m data_pipeline` on the config and SIGKILL it once `calls` generations were served."""
    generated.clear()
    command = [sys.executable, "-m", "data_pipeline", "--config", str(config_path), *overrides]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(generated) < calls and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert process.poll() is None, "the pipeline finished before it could be killed mid-generation"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


@pytest.mark.slow
def test_kill_9_mid_generation_then_rerun_repeats_no_completed_call(tmp_path):
    generated = []
    reply = counting_generations(generated)

    with LocalOpenAIServer(reply, faults=Faults(delay_s=0.05)) as server:
        reference = server_config(server.base_url, tmp_path, "reference")
        run(reference, tmp_path)
        uninterrupted_calls = sum(server.completed_calls().values())
        server.reset_records()

        resumed = server_config(server.base_url, tmp_path, "out")
        path = tmp_path / "resumed.yaml"
        path.write_text(yaml.safe_dump(resumed))
        kill_9_mid_generation(path, generated)
        assert not (Path(resumed["output_dir"]) / "manifest.json").exists()
        served_before_kill = sum(server.completed_calls().values())

        stats = run_pipeline(parse_config(["--config", str(path)]))  # the same config, run again
        completed = server.completed_calls()
    repeated = {key: n for key, n in completed.items() if n > 1}
    # Only calls in flight at the kill (at most max_concurrency) may be served twice; every finished call was cached.
    assert len(repeated) <= 4, repeated
    assert sum(completed.values()) <= uninterrupted_calls + 4
    _, manifest, _ = read_outputs(Path(resumed["output_dir"]))
    assert stats["llm_calls"]["generator"]["cached"] >= 12 - 4
    assert sum(c["cached"] for c in stats["llm_calls"].values()) >= served_before_kill - 4
    _, reference_manifest, _ = read_outputs(Path(reference["output_dir"]))
    assert manifest["outputs"] == reference_manifest["outputs"]


def test_an_empty_split_is_saved_so_that_it_loads_back(tmp_path):
    # A DPO split can end up empty (no row with a valid pair); datasets would write it as zero unreadable shards.
    rows = Dataset.from_list([{"id": "a", "prompt": "p"}])
    save_datasets(tmp_path, {"dpo": DatasetDict(train=rows, validation=rows.select([]), test=rows)})
    loaded = load_from_disk(str(tmp_path / "dpo"))
    assert {split: len(ds) for split, ds in loaded.items()} == {"train": 1, "validation": 0, "test": 1}


def test_a_judge_that_keeps_no_preference_pair_fails_the_build_by_name(tmp_path):
    """Every candidate rated 5/5/5 (scripted judge: 'Ratings equal'): every row passes, but no pair clears a
    min_margin of 0.5, so the DPO view's train split would be empty: the build fails naming it, and output_dir holds
    no build, only the call cache (which keeps the calls the failed run paid for)."""

    def same_ratings(messages, params):
        if "impartial judge" in messages[-1]["content"]:
            return json.dumps({"rationale": "Ratings equal.", "helpful": 5, "harmless": 5, "honest": 5})
        return scripted_reply(messages, params)

    with LocalOpenAIServer(same_ratings) as server:
        config = server_config(server.base_url, tmp_path, "out")
        config["expand"]["max_calls"] = 0
        config["judge"] |= {"min_margin": 0.5, "max_iterations": 0}
        with pytest.raises(ConfigError) as error:
            run(config, tmp_path)
    assert str(error.value).startswith("views: dpo/train has no rows (rejection sampling kept ")
    assert "with a preference pair" in str(error.value) and "judge.min_margin" in str(error.value)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["llm_cache"]
