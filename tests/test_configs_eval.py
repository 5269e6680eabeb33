"""configs/eval/*.yaml parse into EvalConfig; unknown keys fail; fixtures are valid; bad input names file/line/field."""

import pytest
import yaml

from eval.config import parse_config
from eval.hhh.testsets import FIXTURE_FIELDS, FIXTURES_DIR, EvalInputError, load_test_sets, read_fixture
from tests.conftest import REPO_ROOT

CONFIGS = sorted((REPO_ROOT / "configs" / "eval").glob("*.yaml"))


def test_all_three_configs_exist():
    assert {p.stem for p in CONFIGS} >= {"demo", "qwen3-8b", "deepseek-r1-distill-qwen-7b"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_parses(path):
    cfg = parse_config(["--config", str(path)])
    assert cfg.model_specs and cfg.output_dir.startswith("runs/")
    for metric, spec in cfg.judge_specs.items():
        assert spec.model, metric


def test_real_configs_compare_base_sft_and_dpo_on_hub_sets():
    for name, base in (
        ("qwen3-8b", "Qwen/Qwen3-8B"),
        ("deepseek-r1-distill-qwen-7b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"),
    ):
        cfg = parse_config(["--config", str(REPO_ROOT / "configs" / "eval" / f"{name}.yaml")])
        assert [m.model for m in cfg.model_specs] == [base] * 3
        assert [m.adapter is not None for m in cfg.model_specs] == [False, True, True]
        assert all(cfg.baseline_of(m) == name for m in cfg.model_specs[1:])
        assert (cfg.helpfulness, cfg.harmlessness, cfg.honesty) == (
            "tatsu-lab/alpaca_eval",
            "PKU-Alignment/BeaverTails",
            "truthfulqa/truthful_qa",
        )
        assert cfg.judge_specs["safety"].api_key_env == "OPENAI_API_KEY"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_judges_answer_as_data_and_alpaca_eval_runs_the_published_glm(path):
    """No shipped config reads a verdict from prose; GPT-4.1 judges reason within a token budget that has room for
    it, helpfulness from log-probabilities (AlpacaEval 2.0's weighted preference); every config on AlpacaEval 2.0
    gives df_gamed.csv, so its LC win rate is length_controlled_v1."""
    cfg = parse_config(["--config", str(path)])
    modes = {metric: spec.mode for metric, spec in cfg.judge_specs.items()}
    assert "generative" not in modes.values(), modes
    for metric, spec in cfg.judge_specs.items():
        if spec.model == "gpt-4.1":
            assert (spec.mode, metric) in (("logprobs", "helpfulness"), ("structured", metric)), metric
            assert spec.mode != "structured" or (spec.max_new_tokens >= 512 and spec.reason_max_chars is None)
    if cfg.helpfulness != "fixture":
        assert cfg.length_control_data in ("tatsu-lab/alpaca_eval", "eval/fixtures/hub/df_gamed.csv")


def test_cli_overrides_flat_fields():
    cfg = parse_config(
        ["--config", str(REPO_ROOT / "configs/eval/demo.yaml"), "--max_new_tokens", "7", "--report_to", "none"]
    )
    assert cfg.max_new_tokens == 7 and cfg.report_to == "none"


def _write(tmp_path, **changes):
    base = yaml.safe_load((REPO_ROOT / "configs/eval/demo.yaml").read_text())
    base.update(changes)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(base))
    return path


def test_unknown_keys_fail_everywhere(tmp_path):
    with pytest.raises(ValueError, match="Unknown arguments"):
        parse_config(["--config", str(_write(tmp_path, max_new_tokenz=3))])
    with pytest.raises(ValueError, match="no_such_flag"):
        parse_config(["--config", str(_write(tmp_path)), "--no_such_flag", "1"])
    with pytest.raises(ValueError, match=r"models\[0\]: unknown key\(s\) \['adaptor'\]"):
        parse_config(["--config", str(_write(tmp_path, models=[{"name": "a", "model": "m", "adaptor": "x"}]))])
    with pytest.raises(ValueError, match=r"judges.safety: unknown key\(s\) \['temprature'\]"):
        parse_config(
            ["--config", str(_write(tmp_path, judges={"default": {"model": "m"}, "safety": {"temprature": 0}}))]
        )
    with pytest.raises(ValueError, match=r"unknown metric\(s\) \['helpfullness'\]"):
        parse_config(["--config", str(_write(tmp_path, judges={"default": {"model": "m"}, "helpfullness": {}}))])
    with pytest.raises(ValueError, match="'classifier' works for"):
        judges = {"default": {"model": "m"}, "helpfulness": {"mode": "classifier"}}
        parse_config(["--config", str(_write(tmp_path, judges=judges))])
    with pytest.raises(ValueError, match="baseline 'nope'"):
        parse_config(["--config", str(_write(tmp_path, models=[{"name": "a", "model": "m", "baseline": "nope"}]))])


def test_fixtures_are_original_sets_of_a_few_dozen(tmp_path):
    cfg = parse_config(["--config", str(_write(tmp_path, culturax_dataset="", max_prompts_per_set=None))])
    sets, train = load_test_sets(cfg)
    assert train is None and set(sets) == {"helpfulness", "harmlessness", "honesty"}
    for name, ds in sets.items():
        assert 24 <= len(ds) <= 60, name
        assert len(set(ds["id"])) == len(ds) and len(set(ds["prompt"])) == len(ds), name
    assert all(
        len(c) >= 1 and len(i) >= 1
        for c, i in zip(sets["honesty"]["correct_answers"], sets["honesty"]["incorrect_answers"], strict=True)
    )


def test_bad_fixture_line_names_file_line_and_field(tmp_path):
    good = (FIXTURES_DIR / "helpfulness.jsonl").read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([good[0], '{"id": "x", "prompt": "q", "reference": ""}']) + "\n")
    with pytest.raises(EvalInputError, match=r"bad.jsonl:2: field 'reference'"):
        read_fixture(bad, FIXTURE_FIELDS["helpfulness"])
    bad.write_text("{not json\n")
    with pytest.raises(EvalInputError, match=r"bad.jsonl:1: field '<line>': invalid JSON"):
        read_fixture(bad, FIXTURE_FIELDS["helpfulness"])


def test_real_configs_pin_revisions_and_measure_heldout():
    for path in CONFIGS:
        cfg = parse_config(["--config", str(path)])
        if cfg.helpfulness == "tatsu-lab/alpaca_eval":
            assert cfg.helpfulness_revision and cfg.harmlessness_revision and cfg.honesty_revision, path.stem
            if any(spec.chat_template == "none" for spec in cfg.model_specs):
                continue  # base models without a chat template: held-out scoring cannot render them (refused)
            assert cfg.heldout_data == "runs/culturax/data", path.stem
            # The DPO model's reference (its SFT adapter, eval/heldout/dpo_reference.py) is evaluated too.
            adapters = [spec.adapter or "" for spec in cfg.model_specs]
            assert any("/dpo_" in a for a in adapters) and any("/sft_" in a for a in adapters), path.stem


def test_local_hub_sets_config_reads_every_hhh_set_from_a_hub_schema_file():
    cfg = parse_config(["--config", str(REPO_ROOT / "configs/eval/local_hub_sets.yaml")])
    files = (cfg.helpfulness, cfg.harmlessness, cfg.honesty)
    assert [f.rsplit(".", 1)[1] for f in files] == ["json", "jsonl", "parquet"]
    assert all((REPO_ROOT / f).is_file() and f.startswith("eval/fixtures/hub/") for f in files)
    sets, _ = load_test_sets(cfg)
    assert {name: len(ds) for name, ds in sets.items()} == {"helpfulness": 12, "harmlessness": 12, "honesty": 12}


def test_a_presets_chat_template_reaches_heldout_scoring_and_the_benchmarks():
    """qwen3-8b.yaml sets thinking off only through its preset: lm-eval's prompts and the held-out scoring must render
    the same template as the generations (and as training), not the template's thinking-on default."""
    from eval.benchmarks import harness as benchmarks

    path = REPO_ROOT / "configs" / "eval" / "qwen3-8b.yaml"
    cfg = parse_config(["--config", str(path), "--backend", "transformers"])
    for spec in cfg.model_specs:
        assert not spec.chat_template_kwargs and not cfg.chat_template_kwargs  # the preset is the only source
        assert cfg.model_llm_config(spec).chat_template_kwargs == {"enable_thinking": False}
        kind, args = benchmarks.lm_eval_model(cfg, spec, {})
        assert kind == "hf" and args["chat_template_args"] == {"enable_thinking": False}
