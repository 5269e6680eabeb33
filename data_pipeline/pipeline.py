"""The one place where the stage order is composed.

import sources -> classify -> expand -> dedup -> contamination guard -> split -> generate -> judge -> views -> outputs

Each stage is a function over datasets.Dataset rows with its settings in a config dataclass; this module only decides
which of them run (``stages`` in the config), feeds each the previous stage's rows, and collects their reports into
stats.json. LLMs are built once per role, all behind the on-disk call cache, so a rerun repeats no finished call.
The build is written beside output_dir and replaces the previous one whole, only when complete, with output_dir locked
for the run (core/publish.py).
"""

import json
import time
from contextlib import contextmanager
from pathlib import Path

from datasets import Dataset, DatasetDict, Value, concatenate_datasets
from rich.console import Console

from core.digests import sha256_file
from core.llm import LLM, build_llm, llm_progress, llm_stats, share_vllm_engines, stats_since
from core.publish import publishing
from data_pipeline.classify import build_classifier, classify_dataset
from data_pipeline.config import STAGES, ConfigError, PipelineConfig, secret_free
from data_pipeline.dedup import dedup, remove_contaminated
from data_pipeline.expand import expand_dataset
from data_pipeline.generate import generate_candidates
from data_pipeline.importers import SEED_PATH, load_sources
from data_pipeline.judge import rejection_sample
from data_pipeline.outputs import save_datasets, subdomain_table, write_card, write_json, write_manifest
from data_pipeline.schema import rows_to_dataset
from data_pipeline.split import cross_split_leakage, split_dataset
from data_pipeline.views import build_views

console = Console(stderr=True)


def load_eval_prompts(paths: list[str]) -> list[str]:
    """Evaluation prompts to keep out of the data: ``.txt`` (one per line) or ``.jsonl`` (field "prompt")."""
    prompts = []
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                if path.endswith(".jsonl"):
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as error:
                        raise ConfigError(f"{path}:{line_number}: field 'prompt': invalid JSON ({error})") from None
                    if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
                        raise ConfigError(f"{path}:{line_number}: field 'prompt': missing or not a string")
                    prompts.append(record["prompt"])
                elif path.endswith(".txt"):
                    prompts.append(line.strip())
                else:
                    raise ConfigError(f"{path}: eval prompts must be .txt or .jsonl")
    return prompts


class Stages:
    """Announces each configured stage, times it and records its row count (progress bars come from the stages)."""

    def __init__(self, names: list[str]):
        self.names = [*names, "outputs"]
        self.rows: dict[str, int] = {}
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        console.rule(f"[bold]stage {self.names.index(name) + 1}/{len(self.names)}: {name}")
        start = time.perf_counter()
        with llm_progress(name) as llm_calls:  # every LLM call of the stage on one bar (on a terminal)
            yield
        self.seconds[name] = round(time.perf_counter() - start, 3)
        calls = f"; LLM calls {llm_calls.done}/{llm_calls.total}, {llm_calls.postfix()}" if llm_calls.total else ""
        console.print(f"{name}: done in {self.seconds[name]:.1f}s{calls}", soft_wrap=True)  # logs too (no bars)


def _check_stages(cfg: PipelineConfig) -> None:
    for stage, needs in (("judge", "generate"), ("views", "judge")):
        if stage in cfg.stages and needs not in cfg.stages:
            raise ConfigError(f"stage '{stage}' needs stage '{needs}' in 'stages'")
    for required in ("import", "split"):
        if required not in cfg.stages:
            raise ConfigError(f"'stages' must include '{required}'")


def _input_hashes(cfg: PipelineConfig) -> dict[str, str]:
    """sha256 of every file the run read: sources, eval prompts, classifier training data and prompt files."""
    files = [
        Path(spec.path) if spec.format != "seed" else SEED_PATH for spec in cfg.source_specs if spec.format != "hf"
    ]
    files += [Path(p) for p in cfg.eval_prompts]
    if cfg.builds_classifier:
        files.append(Path(cfg.classify_config.train_file) if cfg.classify_config.train_file else SEED_PATH)
    files += [path for _, path in cfg.prompt_files()]
    return {str(path): sha256_file(path) for path in dict.fromkeys(files)}


def run_pipeline(cfg: PipelineConfig) -> dict:
    """Run the configured stages and write everything under cfg.output_dir; returns stats.json's content.

    output_dir is locked for the run (a second run on it stops at once). The build goes to a staging folder beside
    output_dir and replaces the previous build whole, only once complete: a run that fails or is killed leaves the
    previous build untouched, and the call cache (output_dir/llm_cache, not part of the build) keeps every call."""
    _check_stages(cfg)
    llms: dict[str, LLM] = {}
    try:
        with publishing(cfg.output_dir, last=("manifest.json",)) as staging:
            return _build(cfg, staging, llms)
    finally:
        close(llms, list(llms))


def close(llms: dict[str, LLM], roles: list[str]) -> None:
    """Free the models of ``roles`` (kept in ``llms`` for the stats); a vLLM engine stops with its last role."""
    for role in roles:
        if role in llms:
            llms[role].close()


def _build(cfg: PipelineConfig, output_dir: Path, llms: dict[str, LLM]) -> dict:
    """Every stage, with all outputs written under ``output_dir`` (the staging folder); the LLM of each role is
    built when first needed (roles on one vLLM model share its engine) and freed after its last stage."""
    stage = Stages([name for name in STAGES if name in cfg.stages])
    calls_before = llm_stats()
    stats: dict = {}
    share_vllm_engines(list(cfg.llm_configs.values()))

    def llm(role: str) -> LLM:
        if role not in llms:
            llms[role] = build_llm(cfg.llm_configs[role], cfg.cache_dir, role)
        return llms[role]

    eval_prompts = load_eval_prompts(cfg.eval_prompts)
    with stage("import"):
        imported = load_sources(cfg.source_specs, cfg.seed)
        ds: Dataset = rows_to_dataset(imported.rows)
        stats["import"] = {"rows": len(ds), "skipped_rows": len(imported.skipped), "skipped": imported.skipped,
                           "sources": imported.sources}  # fmt: skip
        stage.rows["import"] = len(ds)

    classifier = None
    if cfg.builds_classifier:
        needs_llm = cfg.classify_config.method == "llm"
        classifier = build_classifier(cfg.classify_config, llm("classifier") if needs_llm else None)
    if "classify" in cfg.stages:
        with stage("classify"):
            ds, stats["classify"] = classify_dataset(ds, classifier, cfg.classify_config)
            stage.rows["classify"] = len(ds)
    if "expand" in cfg.stages:
        with stage("expand"):
            ds, stats["expand"] = expand_dataset(
                ds, llm("expander"), classifier, cfg.classify_config.delta, cfg.expand_config, cfg.dedup_config,
                eval_prompts, cfg.seed,
            )  # fmt: skip
            stage.rows["expand"] = len(ds)
    close(llms, ["classifier", "expander"])  # no later stage calls them
    if "dedup" in cfg.stages:
        with stage("dedup"):
            ds, stats["dedup"] = dedup(ds, cfg.dedup_config, progress=True)
            stage.rows["dedup"] = len(ds)
    if "contamination" in cfg.stages:
        with stage("contamination"):
            ds, stats["contamination"] = remove_contaminated(ds, eval_prompts, cfg.dedup_config, progress=True)
            stage.rows["contamination"] = len(ds)
    with stage("split"):
        dsd = split_dataset(ds, cfg.dedup_config, tuple(cfg.split_fractions), cfg.seed)
        stats["split"] = {name: len(split) for name, split in dsd.items()}
        stage.rows["split"] = sum(stats["split"].values())
    if "generate" in cfg.stages:
        # Generation and judging run once over all splits (one progress bar, one stats table), then split back.
        tagged = [
            split.add_column("split", [name] * len(split), feature=Value("string")) for name, split in dsd.items()
        ]
        ds = concatenate_datasets(tagged)
        with stage("generate"):
            ds = generate_candidates(ds, llm("generator"), cfg.generate_config)
            stats["generate"] = {"prompts": len(ds), "candidates": len(ds) * cfg.generate_config.k}
            stage.rows["generate"] = len(ds)
        if "judge" in cfg.stages:
            with stage("judge"):
                generator, judge = llm("generator"), llm("judge")
                ds, stats["judge"] = rejection_sample(ds, generator, judge, cfg.generate_config, cfg.judge_config)
                stage.rows["judge"] = len(ds)
        dsd = DatasetDict(
            {name: ds.filter(lambda s, n=name: s == n, input_columns="split").remove_columns("split") for name in dsd}
        )
    datasets = {"dataset": dsd}
    if "views" in cfg.stages:
        with stage("views"):
            datasets.update(build_views(dsd))
            stats["views"] = {view: {n: len(s) for n, s in views.items()} for view, views in datasets.items()}
        empty = [f"{view}/train" for view in ("sft", "dpo") if not stats["views"][view]["train"]]
        if empty:  # nothing to train on: fail the build by name, before it replaces the last good one
            raise ConfigError(
                f"views: {' and '.join(empty)} has no rows (rejection sampling kept {stats['views']['sft']['train']} "
                f"training prompts, {stats['views']['dpo']['train']} with a preference pair); lower the judge's "
                "thresholds (judge.helpful_threshold, ...) or judge.min_margin for this judge's rating range"
            )

    with stage("outputs"):
        # Leakage is re-checked on the final rows: judging drops rows, it never adds any.
        leakage = cross_split_leakage(dsd, cfg.dedup_config)
        stats["leakage"] = leakage
        stats["rows_per_stage"] = stage.rows
        stats["subdomain_counts"] = subdomain_table(dsd)
        stats["llm_calls"] = stats_since(calls_before, list(llms))
        hashes = save_datasets(output_dir, datasets)
        write_json(output_dir / "stats.json", stats)
        write_card(output_dir, datasets, stats, {role: built.name for role, built in llms.items()})
    # Written last: a manifest means a complete run. Timings vary run to run, so they stay out of stats.json.
    config = secret_free(cfg.resolved())
    write_manifest(output_dir, config, cfg.seed, _input_hashes(cfg), hashes, leakage, stage.seconds)
    return stats
