"""Every data config parses with the real parser; unknown keys fail naming the key; CLI overrides reach nested keys."""

import dataclasses
from pathlib import Path

import pytest
import yaml

from core.llm import LLMConfig
from data_pipeline.classify import ClassifyConfig
from data_pipeline.config import ConfigError, parse_config, secret_free
from data_pipeline.dedup import DedupConfig
from data_pipeline.expand import ExpandConfig
from data_pipeline.generate import GenerateConfig
from data_pipeline.importers import SourceSpec
from data_pipeline.judge import JudgeConfig

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs" / "data").glob("*.yaml"))


def test_the_three_configs_exist():
    assert {p.name for p in CONFIGS} >= {"demo.yaml", "culturax.yaml", "seed_only.yaml"}


STAGE_CONFIGS = {
    "classify": ClassifyConfig,
    "expand": ExpandConfig,
    "dedup": DedupConfig,
    "generate": GenerateConfig,
    "judge": JudgeConfig,
}


def declared_defaults(cls) -> dict:
    """A dataclass's init fields at the defaults its declaration gives (a field without a default is left out)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.init and f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
        elif f.init and f.default is not dataclasses.MISSING:
            out[f.name] = f.default
    return out


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_data_config_parses_to_what_its_yaml_says(path):
    """Every value the YAML writes reaches the parsed config unchanged, and every key it leaves out is the declared
    default: the expected values are the YAML file read with yaml.safe_load over the dataclasses' declarations."""
    raw = yaml.safe_load(path.read_text())
    cfg = parse_config(["--config", str(path)])
    flat = {key: value for key, value in raw.items() if key not in {"llm", "sources", *STAGE_CONFIGS}}
    assert {key: getattr(cfg, key) for key in flat} == flat
    assert raw["sources"], "a config must name at least one source"
    assert [dataclasses.asdict(s) for s in cfg.source_specs] == [
        declared_defaults(SourceSpec) | s for s in raw["sources"]
    ]
    assert {role: dataclasses.asdict(llm) for role, llm in cfg.llm_configs.items()} == {
        role: declared_defaults(LLMConfig) | values for role, values in raw.get("llm", {}).items()
    }
    for section, cls in STAGE_CONFIGS.items():
        assert dataclasses.asdict(getattr(cfg, f"{section}_config")) == declared_defaults(cls) | raw.get(section, {})


def test_culturax_config_holds_the_papers_settings():
    cfg = parse_config(["--config", str(CONFIGS[0].parent / "culturax.yaml")])
    roles = {role: llm.model for role, llm in cfg.llm_configs.items()}
    assert roles["classifier"].startswith("mistralai/Mistral-7B-Instruct")
    assert roles["expander"] == roles["judge"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert roles["generator"] == "gpt-4.1" and cfg.llm_configs["generator"].api_key_env == "OPENAI_API_KEY"
    gen = cfg.generate_config
    assert (gen.k, gen.temperature, gen.top_p, gen.max_new_tokens) == (3, 0.7, 0.9, 512)
    assert cfg.classify_config.method == "llm" and cfg.classify_config.delta == 0.5
    assert cfg.dedup_config.tau == 10 and cfg.judge_config.max_iterations == 2
    assert cfg.split_fractions == [0.8, 0.1, 0.1] and cfg.seed == 42


def test_seed_only_config_calls_no_llm():
    cfg = parse_config(["--config", str(CONFIGS[0].parent / "seed_only.yaml")])
    assert cfg.stages == ["import", "classify", "dedup", "split"]
    assert cfg.classify_config.method == "embedding" and cfg.llm_configs == {}


def write(tmp_path, text: str) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("yaml_text", "named"),
    [
        ("sedd: 3\n", "sedd"),
        ("llm:\n  judge:\n    modle: x\n", "llm.judge.modle"),
        ("llm:\n  critic:\n    model: x\n", "llm.critic"),
        ("classify:\n  treshold: 0.4\n", "classify.treshold"),
        ("generate:\n  kk: 2\n", "generate.kk"),
        ("sources:\n  - format: seed\n    colums: {}\n", "sources.0.colums"),
        ("stages: [import, clasify, split]\n", "clasify"),
    ],
)
def test_unknown_keys_fail_naming_the_key(tmp_path, yaml_text, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        parse_config(["--config", write(tmp_path, yaml_text)])


def test_unknown_cli_flag_fails(tmp_path):
    path = write(tmp_path, "stages: [import, split]\n")
    with pytest.raises(ConfigError, match="no_such_flag"):
        parse_config(["--config", path, "--no_such_flag", "3"])
    with pytest.raises(ConfigError, match="llm.judge.temprature"):
        parse_config(["--config", path, "--llm.judge.temprature", "3"])


def test_cli_overrides_flat_and_nested_keys(tmp_path):
    path = write(tmp_path, "seed: 1\nstages: [import, split]\nllm:\n  judge: {model: a, backend: openai}\n")
    cfg = parse_config(["--config", path, "--seed", "9", "--llm.judge.model", "b", "--classify.delta=0.7",
                        "--sources.0.on_error", "skip"])  # fmt: skip
    assert cfg.seed == 9
    assert cfg.llm_configs["judge"].model == "b" and cfg.llm_configs["judge"].backend == "openai"
    assert cfg.classify_config.delta == 0.7
    assert cfg.source_specs[0].on_error == "skip"


def test_a_stage_without_its_model_fails_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="llm.generator.model"):
        parse_config(["--config", write(tmp_path, "stages: [import, split, generate]\n")])


def test_secrets_never_reach_the_resolved_config(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-very-secret")
    path = write(
        tmp_path, "llm:\n  generator: {backend: openai, model: m, api_key_env: MY_KEY, base_url: 'http://x'}\n"
    )
    cfg = parse_config(["--config", path, "--stages", "import", "split"])
    resolved = secret_free(cfg.resolved())
    assert "sk-very-secret" not in repr(resolved) and resolved["llm"]["generator"]["api_key_env"] == "MY_KEY"
    # Even a secret pasted into a config value by mistake is redacted before it is written anywhere.
    pasted = parse_config(["--config", path, "--stages", "import", "split", "--output_dir", "runs/sk-very-secret"])
    assert "sk-very-secret" not in repr(secret_free(pasted.resolved()))
