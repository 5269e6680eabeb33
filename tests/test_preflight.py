"""Preflight (--check): each failing item with its message, every shipped config passing against faked endpoints and
keys, and the SLURM chain's preflight at submission (roles the data job serves, inputs earlier jobs write)."""

import contextlib
import json
import os
import re
import subprocess
from pathlib import Path

import huggingface_hub
import pytest
import yaml
from datasets import Dataset, DatasetDict

from core.llm import LLMConfig
from core.llm.local_server import LocalOpenAIServer
from core.llm.probe import PROBE_SCHEMA
from core.preflight import Preflight, PreflightFailed
from data_pipeline.config import parse_config as parse_data_config
from data_pipeline.preflight import check_pipeline
from eval.config import parse_config as parse_eval_config
from eval.preflight import check_eval, check_length_control_data
from tests._vllm_fixtures import require_vllm
from tests.conftest import REPO_ROOT
from tests.reference.lc_cases import write_df_gamed
from train.preflight import check_training
from train.recipes import dpo_parser, parse_for_check, sft_parser

CONFIGS = REPO_ROOT / "configs"


def lines(check: Preflight) -> list[str]:
    return [item.line() for item in check.items()]


def dead_url() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


# ------------------------------------------------------------------------------------------------- each item fails
def test_llm_role_items_fail_with_their_reason(monkeypatch):
    monkeypatch.delenv("ALIGNCULTURA_NO_SUCH_KEY", raising=False)
    with LocalOpenAIServer(lambda m, p: "ok", model_name="served-model") as server:
        check = Preflight("t")
        check.llm("llm.a", LLMConfig(backend="openai", model=""))
        check.llm("llm.b", LLMConfig(backend="openai", model="m"))
        check.llm("llm.c", LLMConfig(backend="openai", model="m", base_url=dead_url()))
        check.llm("llm.d", LLMConfig(backend="openai", model="other", base_url=server.base_url))
        check.llm("llm.e", LLMConfig(backend="openai", model="served-model", base_url=server.base_url,
                                     api_key_env="ALIGNCULTURA_NO_SUCH_KEY"))  # fmt: skip
        check.llm("llm.f", LLMConfig(backend="transformers", model="no/such/folder"))
        got = lines(check)
    assert "✗ llm.a.model: empty (openai (no model)); give a hub id, a local path or a served model name" in got
    assert any(line.startswith("✗ llm.b.base_url: required for the openai backend") for line in got)
    assert any(line.startswith("✗ llm.c.base_url: GET http://127.0.0.1:") and "does not answer" in line for line in got)
    assert f"✗ llm.d.base_url: {server.base_url} answers but does not serve 'other' (it serves: served-model)" in got
    assert (
        "✗ llm.e.api_key_env: environment variable ALIGNCULTURA_NO_SUCH_KEY is not set (export it before running)"
        in got
    )
    assert f"✓ llm.e.base_url: {server.base_url} serves served-model" in got
    assert "✗ llm.f.model: no/such/folder: no such folder, and not a hub id (org/name)" in got
    assert len(check.failures()) == 6  # a, b, c, d, e's key, f


def hide_vllm(monkeypatch) -> None:
    """Make vllm unimportable for the preflight (whether or not vLLM's build is installed here)."""
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else find_spec(name, *a))


def test_vllm_hub_paths_outputs_and_wandb_items(tmp_path, monkeypatch):
    hide_vllm(monkeypatch)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc from `wandb login`
    a_file = tmp_path / "file"
    a_file.write_text("")
    (tmp_path / "empty").mkdir()
    check = Preflight("t", upstream={str(tmp_path / "later"): "the sft job of this chain"})
    check.llm("models.x", LLMConfig(backend="vllm", model="Org/Model"))
    check.path("dataset", tmp_path / "nothing", contains="dataset_dict.json")
    check.path("dataset2", tmp_path / "empty", contains="dataset_dict.json")
    check.path("adapter", tmp_path / "later" / "sft", contains="adapter_config.json")
    check.writable("output_dir", a_file / "out")
    check.wandb("report_to", ["wandb"])
    got = lines(check)
    assert "· models.x.model: Org/Model: hub id; cannot be checked offline (HF_HUB_OFFLINE is set)" in got
    assert (
        "✗ models.x.backend: backend vllm (vllm Org/Model) needs the package 'vllm', which is not installed here" in got
    )
    assert f"✗ dataset: {tmp_path / 'nothing'}: no such folder" in got
    assert f"✗ dataset2: {tmp_path / 'empty'}: no dataset_dict.json in this folder" in got
    later = "not there yet; written by the earlier job (the sft job of this chain)"
    assert f"· adapter: {tmp_path / 'later' / 'sft'}: {later}" in got
    assert f"✗ output_dir: {a_file / 'out'}: {a_file} is not a folder" in got
    assert "✗ report_to: W&B online needs WANDB_API_KEY (or `wandb login`); or set WANDB_MODE=offline" in got
    assert len(check.failures()) == 5
    with pytest.raises(PreflightFailed, match=r"preflight of t failed \(models\.x\.backend: backend vllm"):
        check.raise_if_failed()


def test_roles_the_slurm_data_job_serves(tmp_path, monkeypatch):
    cfg = LLMConfig(backend="openai", model="meta-llama/Llama-3.1-8B-Instruct", base_url="http://127.0.0.1:8000/v1")
    monkeypatch.setenv("AC_VLLM", str(tmp_path / "no-vllm"))
    check = Preflight("t", served_by_job=True)
    check.llm("llm.judge", cfg)
    fake = tmp_path / "vllm"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("AC_VLLM", str(fake))
    check.llm("llm.expander", cfg)
    got = lines(check)
    served = "http://127.0.0.1:8000/v1: served inside the SLURM data job (vllm serve meta-llama/Llama-3.1-8B-Instruct"
    assert f"· llm.judge.base_url: {served} --port 8000, slurm/serve_local_llms.py)" in got
    assert any(
        line.startswith("✗ llm.judge server: the data job serves") and "is not installed" in line for line in got
    )
    assert f"✓ llm.expander server: {fake} found (serves meta-llama/Llama-3.1-8B-Instruct in the job)" in got


def test_training_items_dataset_splits_and_manifest(tmp_path, tiny_models):
    out = tmp_path / "data"
    DatasetDict(train=Dataset.from_dict({"messages": [[{"role": "user", "content": "hi"}]]})).save_to_disk(out / "sft")
    (out / "manifest.json").write_text(json.dumps({"leakage": {"cross_split_pairs": 3}}))
    config = tmp_path / "sft.yaml"
    recipe = yaml.safe_load((CONFIGS / "train" / "tiny-qwen3" / "sft_lora.yaml").read_text())
    recipe.update(dataset_name=str(out / "sft"), model_name_or_path=str(tiny_models["tiny-qwen3"]),
                  output_dir=str(tmp_path / "run"), eval_strategy="steps", eval_steps=1)  # fmt: skip
    config.write_text(yaml.safe_dump(recipe))
    check = Preflight(str(config))
    check_training(*parse_for_check(sft_parser, ["--config", str(config)], check), check)
    got = lines(check)
    assert f"✗ dataset_name: {out / 'sft'}: no split ['validation'] (it has ['train'])" in got
    manifest = out.resolve() / "manifest.json"
    assert (
        f"✗ data manifest: {manifest}: field 'leakage.cross_split_pairs': 3 near-duplicate pairs cross splits "
        "(training refuses it; allow_unguarded_dataset overrides)"
    ) in got
    assert f"✓ model_name_or_path: {tiny_models['tiny-qwen3']} (local)" in got
    assert len(check.failures()) == 2


# ---------------------------------------------------------------------------- every shipped config, endpoints faked
def produced_by_the_chains() -> dict[str, str]:
    """What the shipped chains write before a later stage reads it: every data and training config's output_dir,
    the demos' stage folders as the Makefile's demo chains write them and the real model `make demo` fetches (a path
    outside these is not produced)."""
    out = {}
    for path in sorted((CONFIGS / "data").glob("*.yaml")) + sorted((CONFIGS / "train").glob("*/*.yaml")):
        out[str(REPO_ROOT / yaml.safe_load(path.read_text())["output_dir"])] = f"{path.relative_to(REPO_ROOT)}"
    makefile = (REPO_ROOT / "Makefile").read_text()
    for target, variable in (("make demo", "DEMO"), ("make demo-tiny", "DEMO_TINY")):  # each a demo_chain
        demo = re.search(rf"^{variable} := (\S+)$", makefile, re.MULTILINE).group(1)
        for folder in re.findall(r"--output_dir \$\(1\)/(\w+)", makefile):
            out[str(REPO_ROOT / demo / folder)] = target
    real_model = re.search(r"^REAL_MODEL := (\S+)$", makefile, re.MULTILINE).group(1)
    out[str(REPO_ROOT / real_model)] = "make demo"  # python -m train.real_models fetch
    return out


@pytest.fixture
def faked_world(tmp_path, monkeypatch, tiny_models):
    """Dummy key variables and Hugging Face token, W&B offline, the tiny models where the demo configs expect
    `runs/tiny_models`, and what the chains' earlier stages write (produced_by_the_chains) counted as written. vllm is
    the real one (vLLM's CPU build in CI), so a config whose vllm check fails fails here."""
    require_vllm()
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.setenv("OPENAI_API_KEY", "dummy-key")
    monkeypatch.setenv("HF_TOKEN", "dummy-token")  # gated hub models (Gemma) ask for one
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("WANDB_MODE", "offline")
    tiny = {f"runs/tiny_models/{name}": str(path) for name, path in tiny_models.items()}
    # AlpacaEval's df_gamed.csv as if downloaded once into the Hugging Face cache (a stand-in in its layout)
    df_gamed = tmp_path / "df_gamed.csv"
    write_df_gamed(df_gamed)
    cache_lookup = huggingface_hub.try_to_load_from_cache
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name, **kw: str(df_gamed)
                        if name == "df_gamed.csv" else cache_lookup(repo, name, **kw))  # fmt: skip
    return {"upstream": produced_by_the_chains(), "tiny": tiny}


def capable_server(messages, params) -> dict:
    """A server with structured output and log-probabilities, as the judges' preflight probes ask for them."""
    content = json.dumps({"answer": "yes"}) if params["json_schema"] else "ok"
    return {"content": content, "top_logprobs": [("yes", -0.1), ("no", -2.4)]}


@contextlib.contextmanager
def serve_openai_roles(llm_configs: list, reply=capable_server):
    """Point every openai role that names an endpoint at a local server serving its model (one per model); yields
    the servers by model and stops them on exit."""
    servers: dict = {}
    try:
        for cfg in llm_configs:
            if cfg.backend == "openai" and cfg.base_url:
                if cfg.model not in servers:
                    servers[cfg.model] = LocalOpenAIServer(reply, model_name=cfg.model).start()
                cfg.base_url = servers[cfg.model].base_url
        yield servers
    finally:
        for server in servers.values():
            server.stop()


@pytest.mark.parametrize("path", sorted((CONFIGS / "data").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_data_config_passes_its_preflight(path, faked_world, tmp_path):
    cfg = parse_data_config(["--config", str(path), "--output_dir", str(tmp_path / "out")])
    for role in cfg.llm_configs.values():
        role.model = faked_world["tiny"].get(role.model, role.model)
    for spec in cfg.source_specs:
        if spec.path and not Path(spec.path).exists() and spec.format == "culturax_release":
            spec.path = str(tmp_path / "CulturaX.csv")  # the release lives in ../shared; a CI checkout lacks it
            Path(spec.path).write_text("Question\n")
    with serve_openai_roles(list(cfg.llm_configs.values())) as servers:
        check = check_pipeline(cfg, Preflight(str(path), upstream=faked_world["upstream"]))
        report = check.report()
    print(report)
    assert not check.failures(), report
    if path.stem == "culturax":  # the paper's config: every role through an endpoint, the generator on the API
        assert {"classifier", "expander", "generator", "judge"} <= set(cfg.llm_configs)
        assert "✓ llm.generator.api_key_env: OPENAI_API_KEY is set" in report
        assert f"✓ llm.generator.base_url: {servers['gpt-4.1'].base_url} serves gpt-4.1" in report


def test_a_config_without_the_generator_endpoint_fails_its_preflight(faked_world):
    """The control for the test above: culturax.yaml as shipped before this check existed (no generator base_url)."""
    cfg = parse_data_config(["--config", str(CONFIGS / "data" / "culturax.yaml"), "--llm.generator.base_url", "null"])
    check = check_pipeline(cfg, Preflight("culturax.yaml"))
    assert [item.name for item in check.failures() if item.name.startswith("llm.generator")] == [
        "llm.generator.base_url"
    ]


def test_an_llm_classifier_is_checked_wherever_it_is_called(tmp_path):
    """Expand labels its proposals with the classifier, so expand without the classify stage still calls an LLM
    classifier and reads its prompt; a run whose stages build no classifier neither checks nor hashes that prompt."""
    from data_pipeline.config import ConfigError
    from data_pipeline.pipeline import _input_hashes

    def config(stages: str, roles: str) -> list[str]:
        return ["--config", str(tmp_path / "c.yaml"), "--stages", *stages.split(), "--classify.method", "llm",
                *(arg for role in roles.split() for arg in (f"--llm.{role}.model", "m")),
                "--output_dir", str(tmp_path / "out")]  # fmt: skip

    (tmp_path / "c.yaml").write_text("{}\n")
    with pytest.raises(ConfigError, match=r"^stage 'expand' needs 'llm\.classifier\.model' to be set$"):
        parse_data_config(config("import expand split", "expander"))
    cfg = parse_data_config(config("import expand split", "expander classifier"))
    got = lines(check_pipeline(cfg, Preflight("t")))
    assert "✓ llm.classifier: transformers m for expand: settings complete" in got
    classify_prompt = next(line for line in got if line.startswith("✓ classify.prompt_file: "))
    assert classify_prompt.removeprefix("✓ classify.prompt_file: ") in _input_hashes(cfg)

    cfg = parse_data_config(config("import split", "classifier"))
    got = lines(check_pipeline(cfg, Preflight("t")))
    assert "· llm.classifier: configured, but no configured stage calls it" in got
    assert not any("prompt_file" in line for line in got)
    assert not any(path.endswith(cfg.classify_config.prompt_file) for path in _input_hashes(cfg))


@pytest.mark.parametrize(
    "path", sorted((CONFIGS / "train").glob("*/*.yaml")), ids=lambda p: f"{p.parent.name}/{p.stem}"
)
def test_every_train_config_passes_its_preflight(path, faked_world):
    parser = sft_parser if path.stem.startswith("sft") else dpo_parser
    check = Preflight(str(path), upstream=faked_world["upstream"])
    script_args, training_args, model_args = parse_for_check(parser, ["--config", str(path)], check)
    model_args.model_name_or_path = faked_world["tiny"].get(
        model_args.model_name_or_path, model_args.model_name_or_path
    )
    report = check_training(script_args, training_args, model_args, check).report()
    print(report)
    assert not check.failures(), report


@pytest.mark.parametrize("path", sorted((CONFIGS / "eval").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_eval_config_passes_its_preflight(path, faked_world):
    cfg = parse_eval_config(["--config", str(path)])
    for spec in [*cfg.model_specs, *cfg.judge_specs.values()]:
        spec.model = faked_world["tiny"].get(spec.model, spec.model)
    with serve_openai_roles([*cfg.model_specs, *cfg.judge_specs.values()]):
        check = check_eval(cfg, Preflight(str(path), upstream=faked_world["upstream"]))
        report = check.report()
    print(report)
    assert not check.failures(), report


def test_the_faked_world_fails_a_path_no_stage_writes_and_a_missing_vllm(faked_world, monkeypatch):
    """The control for the three tests above: their world still fails an adapter path that no chain writes (a typo
    under runs/) and a vllm backend without vllm."""
    cfg = parse_eval_config(["--config", str(CONFIGS / "eval" / "qwen3-8b.yaml")])
    cfg.model_specs[1].adapter = "runs/qwen3-8b/sft_lorra"
    hide_vllm(monkeypatch)
    with serve_openai_roles([*cfg.model_specs, *cfg.judge_specs.values()]):
        check = check_eval(cfg, Preflight("qwen3-8b.yaml", upstream=faked_world["upstream"]))
        report = check.report()
    print(report)
    failed = [item.name for item in check.failures()]
    assert "models.qwen3-8b+sft.adapter" in failed, report
    assert any(name.endswith(".backend") for name in failed), report
    sft_check = Preflight("dpo_lora.yaml", upstream=faked_world["upstream"])
    path = CONFIGS / "train" / "qwen3-8b" / "dpo_lora.yaml"
    check_training(*parse_for_check(dpo_parser, ["--config", str(path), "--sft_adapter", "runs/qwen3-8b/sft"],
                                    sft_check), sft_check)  # fmt: skip
    assert "sft_adapter" in [item.name for item in sft_check.failures()], sft_check.report()


def test_df_gamed_csv_is_checked_whole_and_a_missing_one_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = parse_eval_config(["--config", str(CONFIGS / "eval" / "qwen3-8b.yaml")])
    check = Preflight("qwen3-8b.yaml")
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *args, **kwargs: None)  # never downloaded
    check_length_control_data(cfg, check)  # the hub id, not in the Hugging Face cache, offline
    cfg.length_control_data = str(tmp_path / "df_gamed.csv")
    check_length_control_data(cfg, check)  # a local path that is not there
    (tmp_path / "df_gamed.csv").write_text("model,index\nx,0\n")
    check_length_control_data(cfg, check)  # there, but not df_gamed.csv's layout
    write_df_gamed(tmp_path / "df_gamed.csv")
    check_length_control_data(cfg, check)
    got = lines(check)
    how = "get it once: `huggingface-cli download tatsu-lab/alpaca_eval df_gamed.csv --repo-type dataset"
    assert got[0].startswith("✗ length_control_data: tatsu-lab/alpaca_eval: df_gamed.csv is not in the Hugging Face "
                             "cache and the hub is offline; " + how)  # fmt: skip
    assert got[1].startswith(f"✗ length_control_data: {tmp_path / 'df_gamed.csv'}: no such file; " + how)
    assert got[2] == f"✗ length_control_data: {tmp_path / 'df_gamed.csv'}:1: field 'preference': column missing " \
                     "(expected alpaca_eval's df_gamed.csv)"  # fmt: skip
    assert got[3] == f"✓ length_control_data: {tmp_path / 'df_gamed.csv'}: 805 instructions, 1610 rows " \
                     "(length_controlled_v1)"  # fmt: skip


def test_a_judge_server_without_structured_output_or_logprobs_fails_by_name(faked_world):
    """The shipped GPT-4.1 judges (structured output; helpfulness from log-probabilities) against a server that answers
    text only: each mode's probe fails, once per endpoint and mode, before any judgement; the served models pass."""
    cfg = parse_eval_config(["--config", str(CONFIGS / "eval" / "qwen3-8b.yaml")])
    with serve_openai_roles(cfg.judge_specs.values(), reply=lambda messages, params: "ok") as servers:
        check = check_eval(cfg, Preflight("qwen3-8b.yaml", upstream=faked_world["upstream"]))
        report = check.report()
        probes = [r.fields for r in servers["gpt-4.1"].records if r.fields["max_tokens"] in (1, 16)]
    failed = {item.name: item.detail for item in check.failures()}
    assert set(failed) == {"judges.helpfulness.mode", "judges.safety.mode"}, report
    assert failed["judges.safety.mode"] == (
        "structured output: the server ignored the JSON schema (it replied 'ok'); use a server with structured "
        "outputs, or mode generative"
    )
    assert "logprobs request failed" in failed["judges.helpfulness.mode"] and "no top_logprobs" in report
    schema = {"type": "json_schema", "json_schema": {"name": "reply", "strict": True, "schema": PROBE_SCHEMA}}
    assert [(p["response_format"], p["logprobs"]) for p in probes].count((schema, None)) == 1  # one probe per mode
    with serve_openai_roles(cfg.judge_specs.values()):
        assert not check_eval(cfg, Preflight("qwen3-8b.yaml", upstream=faked_world["upstream"])).failures()


# ----------------------------------------------------------------------------------------------- the SLURM chain
def load_preflight_chain():
    import importlib.util

    spec = importlib.util.spec_from_file_location("preflight_chain", REPO_ROOT / "slurm" / "preflight_chain.py")
    chain = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(chain)
    return chain


def test_the_paper_chain_preflight_at_submission(faked_world, monkeypatch, tmp_path, capsys):
    """Qwen3-8B's chain as submit_pipeline.sh checks it: the two 127.0.0.1 endpoints are served inside the data job,
    the dataset and adapters are written by earlier jobs; only the generator's API endpoint is asked (faked)."""
    import sys

    fake_vllm = tmp_path / "vllm-bin"
    fake_vllm.write_text("#!/bin/sh\n")
    fake_vllm.chmod(0o755)
    monkeypatch.setenv("AC_VLLM", str(fake_vllm))
    chain = load_preflight_chain()
    with LocalOpenAIServer(capable_server, model_name="gpt-4.1") as api:
        argv = ["--stage", "data", "configs/data/culturax.yaml", "--llm.generator.base_url", api.base_url]
        argv += ["--sources.0.path", str(Path(sys.executable))]  # any existing file: the release may be absent
        for stage in ("sft", "dpo"):
            argv += ["--stage", stage, f"configs/train/qwen3-8b/{stage}_lora.yaml"]
        eval_config = yaml.safe_load((CONFIGS / "eval" / "qwen3-8b.yaml").read_text())
        eval_config["judges"]["default"]["base_url"] = api.base_url  # nested: no CLI override reaches it
        (tmp_path / "eval.yaml").write_text(yaml.safe_dump(eval_config))
        argv += ["--stage", "eval", str(tmp_path / "eval.yaml")]
        code = chain.main(argv)
    printed = capsys.readouterr().out
    print(printed)
    assert code == 0
    assert printed.count("preflight: ready to run") == 4
    served = "· llm.judge.base_url: http://127.0.0.1:8000/v1: served inside the SLURM data job"
    assert served in printed and f"✓ llm.judge server: {fake_vllm} found" in printed
    assert "· judge.mode: structured: probed by the job's own preflight, once it serves" in printed
    assert "✓ judges.safety.mode: structured output: answers a JSON schema" in printed
    assert "· dataset_name: runs/culturax/data/sft: not there yet; written by the earlier job (the data job" in printed
    assert "· sft_adapter: runs/qwen3-8b/sft_lora: not there yet; written by the earlier job (the sft job" in printed
    dpo_adapter = "· models.qwen3-8b+sft+dpo.adapter: runs/qwen3-8b/dpo_lora: not there yet; written by the earlier job"
    assert f"{dpo_adapter} (the dpo job of this chain)" in printed


def test_a_malformed_stage_config_fails_that_stage_and_the_others_are_checked(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO_ROOT)
    bad = tmp_path / "sft.yaml"
    bad.write_text("output_dir: runs/x\nlora_target_modules: [q_proj\n  bad: : :\n")
    code = load_preflight_chain().main(
        ["--stage", "sft", str(bad), "--stage", "dpo", "configs/train/tiny-qwen3/dpo_lora.yaml"]
    )
    printed = capsys.readouterr().out
    print(printed)
    assert code == 2
    failed = next(line for line in printed.splitlines() if line.startswith("✗ config: "))
    assert f'"{bad}", line 2' in failed and "<unicode string>" not in failed  # the YAML error names the file
    assert "preflight dpo: configs/train/tiny-qwen3/dpo_lora.yaml" in printed  # the next stage is still checked
    assert printed.count("preflight: ") == 2


def test_submit_pipeline_stops_before_sbatch_when_a_stage_fails_its_preflight(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    marker = tmp_path / "sbatch-called"
    (bin_dir / "sbatch").write_text(f"#!/bin/sh\ntouch {marker}\necho 1\n")
    (bin_dir / "sbatch").chmod(0o755)
    config = tmp_path / "data.yaml"
    missing = tmp_path / "missing.jsonl"
    config.write_text(yaml.safe_dump({"output_dir": str(tmp_path / "out"), "stages": ["import", "split"],
                                      "sources": [{"format": "jsonl", "path": str(missing)}]}))  # fmt: skip
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    proc = subprocess.run(
        ["slurm/submit_pipeline.sh", "--model", "tiny-qwen3", "--stages", "data", "--data-config", str(config)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert f"✗ sources.0.path: {missing}: no such file" in proc.stderr
    assert "preflight failed (the lines marked ✗ above); nothing submitted" in proc.stderr
    assert not marker.exists()
