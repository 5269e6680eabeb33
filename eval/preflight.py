"""The eval run's preflight items (core/preflight.py has the shared ones and the output format).

``python -m eval --config configs/eval/qwen3-8b.yaml --check``: every evaluated model (weights or endpoint, adapter,
vllm where used; a Hugging Face token for a gated hub model; an endpoint's acceptance of a repetition penalty),
every judge (one line per distinct judge, and one probe request per judge endpoint and mode: its structured output or
log-probabilities; a log-probability judge's options start with distinct real tokens), the CULTURAX test folder, the
HHH sets, the judge prompt files, AlpacaEval's df_gamed.csv, the output and cache folders, and W&B.
"""

from pathlib import Path

from core.preflight import Preflight, hub_offline, is_hub_id
from eval.config import EvalConfig, llm_config
from eval.hhh import length_data
from eval.hhh.judges import KINDS, prompt_path
from eval.hhh.testsets import FIXTURE_FILES, FIXTURES_DIR, HUB_IDS, is_local_source

PROBED_MODES = ("structured", "logprobs")  # what a judge asks of its backend beyond text (core/llm/probe.py)


def check_eval(cfg: EvalConfig, check: Preflight) -> Preflight:
    for spec in cfg.model_specs:
        llm = cfg.model_llm_config(spec)
        check.llm(f"models.{spec.name}", llm)
        penalty = cfg.decodings[spec.name].repetition_penalty
        if llm.backend == "openai" and llm.base_url and penalty != 1.0:  # no OpenAI API field: vLLM's server has it
            check.accepts(f"models.{spec.name}.repetition_penalty", llm, "repetition_penalty", penalty)
        if llm.backend != "openai" and spec.model.startswith(GATED):
            hub_token(check, f"models.{spec.name}.model", spec.model)
        for run in spec.train_runs:
            check.path(f"models.{spec.name}.train_runs", run, kind="dir")
    seen: dict[str, str] = {}
    probed: set[tuple[str, str]] = set()
    for metric, spec in cfg.judge_specs.items():
        if spec.mode in ("classifier", "moderation"):
            check.model(f"judges.{metric}.model", spec.model)
        else:
            judge = llm_config(spec, cfg)
            if repr(judge) in seen:
                check.add("ok", f"judges.{metric}", f"the same judge as judges.{seen[repr(judge)]}")
            else:
                seen[repr(judge)] = metric
                check.llm(f"judges.{metric}", judge)
            if spec.mode in PROBED_MODES and (repr(judge), spec.mode) not in probed:  # one request per judge and mode
                probed.add((repr(judge), spec.mode))
                check.probe(f"judges.{metric}.mode", judge, spec.mode)
            if spec.mode == "logprobs" and judge.backend != "openai":
                check.option_tokens(f"judges.{metric}.options", judge.model, list(KINDS[metric].options))
        if spec.mode != "moderation":  # the moderator's input is its authors' template, not a prompt file
            check.path(f"judges.{metric}.prompt", prompt_path(metric, spec))
    if cfg.culturax_dataset:
        check.path("culturax_dataset", cfg.culturax_dataset, contains="dataset_dict.json")
    if cfg.heldout_data:  # eval/heldout/scoring.py reads the SFT and DPO views' test splits
        for view in ("sft", "dpo"):
            check.path(f"heldout_data.{view}", Path(cfg.heldout_data) / view, contains="dataset_dict.json")
    if cfg.length_control_data:
        check_length_control_data(cfg, check)
    if cfg.benchmark_spec is not None:
        for key, file in local_benchmark_files(cfg.benchmark_spec.data):
            check.path(f"benchmarks.data.{key}", file)
    for name in HUB_IDS:
        source = getattr(cfg, name)
        if source == "fixture":
            check.path(name, FIXTURES_DIR / FIXTURE_FILES[name])
        else:
            check.model(name, source, kind="dataset")
    check.writable("output_dir", cfg.output_dir)
    check.writable("cache_dir", cfg.cache_dir)
    check.wandb("report_to", cfg.report_to)
    return check


def check_length_control_data(cfg: EvalConfig, check: Preflight) -> None:
    """AlpacaEval's df_gamed.csv: a local file, or the hub dataset's copy in the Hugging Face cache, read and checked
    whole (1,610 rows, well under a second); missing, one line saying how to get it."""
    source, name = cfg.length_control_data, "length_control_data"
    path = source
    if not is_local_source(source):
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(source, length_data.FILENAME, revision=cfg.length_control_revision,
                                        repo_type="dataset")  # fmt: skip
        if not isinstance(cached, str):
            if hub_offline():
                check.add("fail", name, f"{source}: {length_data.FILENAME} is not in the Hugging Face cache and the "
                          f"hub is offline; {length_data.HOW_TO_GET}")  # fmt: skip
            else:
                check.add("info", name, f"{source}: {length_data.FILENAME} is downloaded when the run starts")
            return
        path = cached
    if not Path(path).is_file():
        check.add("fail", name, f"{source}: no such file; {length_data.HOW_TO_GET}")
        return
    try:
        data = length_data.read_glm_data(path)
    except ValueError as err:
        check.add("fail", name, str(err))
        return
    check.add("ok", name, f"{path}: {len(data.difficulty)} instructions, {len(data.gamed)} rows (length_controlled_v1)")


def local_benchmark_files(data: dict, prefix: str = ""):
    """(config key, file) for every local benchmark file: task -> file, task -> {split: file}, and for a multilingual
    task language -> either."""
    for key, value in data.items():
        if isinstance(value, dict):
            yield from local_benchmark_files(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


# Hub models behind a licence click-through: downloading them needs a token of an account that accepted it.
GATED = ("google/gemma",)


def hub_token(check: Preflight, name: str, model: str) -> None:
    """A gated hub model not yet in the local Hub cache needs a Hugging Face token to download: say so in one line."""
    from huggingface_hub import get_token, try_to_load_from_cache

    if not is_hub_id(model) or isinstance(try_to_load_from_cache(model, "config.json"), str):
        return  # a local folder, or already downloaded: no token needed
    if get_token():
        check.add("ok", f"{name}.token", f"{model} is gated: a Hugging Face token is set")
    else:
        check.add("fail", f"{name}.token", f"{model} is gated: accept its licence on the Hub, then set HF_TOKEN "
                  "(or run `hf auth login`)")  # fmt: skip
