"""The field's judge-free cultural benchmarks for every evaluated model, through lm-evaluation-harness.

For each model of the eval config (base, +SFT adapter, +SFT+DPO adapter) one `lm_eval.simple_evaluate` call runs the
`benchmarks:` block's tasks (eval/lm_eval_tasks; a multilingual benchmark as one task per language): the `hf` model
with `peft=<adapter>` or the `vllm` model with the adapter as a LoRA request (tests/test_vllm_eval.py holds the two
against each other), with the run's dtype and chat template (chat_template_kwargs), as the rest of the eval generates;
the vLLM engines stop when the benchmarks end. Which questions run is decided once for all models
(eval/benchmarks/sample.py: ids checked unique, `limit` as a seeded stratified sample). lm-eval's logged samples give
one outcome per question, from which come accuracy, stderr, n and the breakdowns, and every baseline -> tuned change,
paired per question with the eval's bootstrap (eval/benchmarks/outcomes.py).

results.json: metrics[<model>]["benchmarks"][<task>] = {"accuracy", "stderr", "n", "breakdown"} (percent; stderr of
the mean, as lm-eval's); a multilingual benchmark nests one such dict per language ([<task>][<lang>]), and
"global_mmlu_lite_en" repeats ["global_mmlu_lite"]["en"]. comparisons[i]["benchmarks"][<task>] (or [<task>][<lang>]) =
{"delta", "ci_low", "ci_high", "n", "too_few"}; comparisons[i]["benchmarks_summary"][<task>] = {"mean_delta",
"worst_language", "worst_delta", "languages_worse", "n_languages"} per multilingual benchmark (languages.py
summary). results["benchmarks"] = what ran (tasks, languages, data sources and revisions, limit, few-shot, chat
template, lm-eval version).
"""

import gc
import logging
from importlib.metadata import version

from eval.benchmarks.languages import LANGUAGES, summary
from eval.benchmarks.outcomes import change_with_breakdown, question_outcomes, task_metrics
from eval.benchmarks.sample import plan_samples
from eval.benchmarks.tasks import BenchmarkInputError, BenchmarkTask, benchmark_tasks, task_manager
from eval.config import BenchmarksSpec, EvalConfig, ModelSpec

log = logging.getLogger(__name__)
ENGLISH_ALIAS = ("global_mmlu_lite_en", "global_mmlu_lite", "en")  # the English-only key kept from before languages


def lm_eval_model(cfg: EvalConfig, spec: ModelSpec, engines: dict):
    """lm-eval's model for a spec: ("hf", args) for transformers, a shared vLLM LM object, or None (no logprobs)."""
    llm = cfg.model_llm_config(spec)
    common = {"pretrained": llm.model, "dtype": llm.dtype, "chat_template_args": dict(llm.chat_template_kwargs)}
    if llm.backend == "transformers":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        return "hf", {**common, "device": device, **({"peft": llm.adapter} if llm.adapter else {})}
    if llm.backend == "vllm":
        return vllm_with_lora(cfg, spec, common, engines), {}
    return None


def vllm_with_lora(cfg: EvalConfig, spec: ModelSpec, common: dict, engines: dict):
    """One lm-eval vLLM engine per base model serves the base and all its adapters (the weights load once, and no
    second engine waits for the first one's GPU memory): lm-eval's VLLM sends its `lora_request` with every call, so
    each model gets its adapter as the request, the base model none. On vLLM's CPU build an engine with LoRA on takes
    one request per call (core.llm.vllm_backend.batches_prompt_logprobs: its CPU LoRA kernel cannot batch them)."""
    from lm_eval.api.registry import get_model
    from vllm.lora.request import LoRARequest

    from core.llm import share_vllm_engines
    from core.llm.vllm_backend import batches_prompt_logprobs, default_cpu_kv_cache

    key = (common["pretrained"], common["dtype"])
    if key not in engines:
        configs = [cfg.model_llm_config(s) for s in cfg.model_specs]
        share_vllm_engines(configs)
        same_base = [c for c in configs if c.backend == "vllm" and (c.model, c.dtype) == key]
        adapters = [c.adapter for c in same_base if c.adapter]
        rank = same_base[0].max_lora_rank
        lora = {"lora_local_path": adapters[0], "max_lora_rank": rank} if adapters else {}
        batch_size = cfg.benchmark_spec.batch_size if batches_prompt_logprobs(bool(adapters)) else 1
        default_cpu_kv_cache()
        engines[key] = get_model("vllm").create_from_arg_obj(vllm_args(common) | lora, {"batch_size": batch_size})
    engine = engines[key]
    adapter = cfg.model_llm_config(spec).adapter
    engine.lora_request = LoRARequest(spec.name, cfg.model_specs.index(spec) + 1, adapter) if adapter else None
    return engine


def vllm_args(common: dict) -> dict:
    """lm-eval's VLLM takes `enable_thinking` as its own argument: lm-eval 0.4.13 drops it from chat_template_args
    (popped, then overwritten), so Qwen3's thinking-off template would silently render with thinking on."""
    template = dict(common["chat_template_args"])
    args = {**common, "chat_template_args": template}
    if "enable_thinking" in template:
        args["enable_thinking"] = template.pop("enable_thinking")
        if args["enable_thinking"]:
            args["think_end_token"] = "</think>"  # required by lm-eval with thinking on
    return args


def run_model(cfg: EvalConfig, spec: ModelSpec, tasks: list[BenchmarkTask], samples: dict, manager, engines: dict):
    """One lm-eval run of every task for one model: {task name: {"samples": [...], "lm_eval": {metric: value}}}."""
    from lm_eval import simple_evaluate

    model = lm_eval_model(cfg, spec, engines)
    if model is None:
        log.warning("benchmarks: model %s skipped: its backend gives no token log-likelihoods", spec.name)
        return None
    bench = cfg.benchmark_spec
    out = simple_evaluate(
        model=model[0],
        model_args=model[1],
        tasks=[item.config for item in tasks],
        task_manager=manager,
        num_fewshot=bench.num_fewshot,
        batch_size=bench.batch_size,
        samples=samples or None,  # the questions each limited task scores; the others score every question
        apply_chat_template=bench.apply_chat_template and spec.chat_template is None,  # "none": plain-text prompts
        log_samples=True,
        bootstrap_iters=0,  # stderr and CIs come from the per-question outcomes below
        random_seed=cfg.seed,
        numpy_random_seed=cfg.seed,
        torch_random_seed=cfg.seed,
        fewshot_random_seed=cfg.seed,
    )
    gc.collect()  # an hf model lm-eval loaded goes before the next one loads
    return {
        task: {
            "samples": out["samples"][task],
            "lm_eval": {
                k.split(",")[0]: v
                for k, v in out["results"][task].items()
                if k.endswith(",none") and isinstance(v, int | float)  # lm-eval writes "N/A" for a missing stderr
            },
        }
        for task in out["samples"]
    }


def nest(tasks: list[BenchmarkTask], per_task: dict) -> dict:
    """{task name: value} -> {benchmark: value} or {benchmark: {language: value}} for a multilingual benchmark, with
    the English-only alias pointing at its English entry."""
    out: dict = {}
    for item in tasks:
        if item.name not in per_task:
            continue
        if item.language is None:
            out[item.benchmark] = per_task[item.name]
        else:
            out.setdefault(item.benchmark, {})[item.language] = per_task[item.name]
    alias, benchmark, language = ENGLISH_ALIAS
    if language in out.get(benchmark, {}):
        out[alias] = out[benchmark][language]
    return out


def run_benchmarks(cfg: EvalConfig) -> tuple[dict, dict, list[BenchmarkTask]]:
    """{model: {task name: records}} and {model: {task name: metrics}} for every model with token log-likelihoods,
    and the tasks they ran."""
    bench = cfg.benchmark_spec
    manager = task_manager()
    tasks = benchmark_tasks(bench, manager)
    if bench.num_fewshot:
        lacking = [item.name for item in tasks if not item.config.get("fewshot_split")]
        if lacking:
            raise BenchmarkInputError(f"{lacking}: benchmarks.num_fewshot > 0 needs a few-shot split (local: give it)")
    samples = plan_samples(tasks, bench, cfg.seed, manager)
    benchmark_of = {item.name: item.benchmark for item in tasks}
    records: dict = {}
    per_model: dict = {}
    engines: dict = {}  # vLLM engines by base model, shared by its adapters
    try:
        for spec in cfg.model_specs:
            runs = run_model(cfg, spec, tasks, samples, manager, engines)
            if runs is None:
                continue
            records[spec.name], per_model[spec.name] = {}, {}
            for name, run in runs.items():
                recs, extra = question_outcomes(benchmark_of[name], run["samples"])
                records[spec.name][name] = recs
                per_model[spec.name][name] = task_metrics(benchmark_of[name], recs, extra, run["lm_eval"])
    finally:
        if engines:
            from core.llm.vllm_backend import stop_engine

            for engine in engines.values():
                stop_engine(engine.model)
    return records, per_model, tasks


def add_benchmarks(results: dict, cfg: EvalConfig) -> None:
    """Run the benchmarks block and add its metrics, paired changes, per-question samples and provenance."""
    records, per_model, tasks = run_benchmarks(cfg)
    bench = cfg.benchmark_spec
    for name, per_task in per_model.items():
        results["metrics"][name]["benchmarks"] = nest(tasks, per_task)
        results["samples"][name] += [
            {"set": f"benchmark/{task}", "id": r["key"], "prompt": r["text"], "response": r["response"]}
            | {"correct": r["correct"]}
            for task, recs in records[name].items()
            for r in recs
        ]
    for comp in results["comparisons"]:
        base, tuned = records.get(comp["baseline"]), records.get(comp["tuned"])
        if base is None or tuned is None:
            continue
        comp["benchmarks"], comp["benchmarks_summary"] = compare(tasks, base, tuned, cfg.bootstrap_resamples, cfg.seed)
    results["benchmarks"] = {
        "tasks": list(bench.tasks),
        "languages": {b: [i.language for i in tasks if i.benchmark == b] for b in LANGUAGES if b in bench.tasks},
        "sources": {b: source(bench, [i for i in tasks if i.benchmark == b]) for b in bench.tasks},
        "limit": bench.limit,
        "num_fewshot": bench.num_fewshot,
        "apply_chat_template": bench.apply_chat_template,
        "lm_eval_version": version("lm_eval"),
        "models": list(per_model),
    }


def compare(tasks: list[BenchmarkTask], base: dict, tuned: dict, resamples: int, seed: int) -> tuple[dict, dict]:
    """One comparison's paired changes ({benchmark: change} or {benchmark: {language: change}}) from two models'
    {task name: records}, and the across-languages summary of each multilingual benchmark."""
    changes = {
        item.name: change_with_breakdown(item.benchmark, base[item.name], tuned[item.name], resamples, seed)
        for item in tasks
    }
    nested = nest(tasks, changes)
    return nested, {b: summary(nested[b]) for b in LANGUAGES if b in nested}


def source(bench: BenchmarksSpec, tasks: list[BenchmarkTask]) -> dict:
    """Where a benchmark's questions came from: its local file(s), or hub dataset, config(s), split and revision."""
    local = bench.data.get(tasks[0].benchmark)
    if local:
        return {"local": local}
    ran = tasks[0].config
    configs = [item.config.get("dataset_name") for item in tasks]
    return {
        "dataset": ran["dataset_path"],
        "config": configs if tasks[0].language is not None else configs[0],
        "split": ran["test_split"],
        "revision": ran.get("dataset_kwargs", {}).get("revision"),
    }
