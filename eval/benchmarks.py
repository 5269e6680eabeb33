"""The field's judge-free cultural benchmarks for every evaluated model, through lm-evaluation-harness.

For each model of the eval config (base, +SFT adapter, +SFT+DPO adapter) one `lm_eval.simple_evaluate` call runs the
`benchmarks:` block's tasks (eval/lm_eval_tasks): the `hf` model with `peft=<adapter>` or the `vllm` model with the
adapter as a LoRA request (tests/test_vllm_eval.py holds the two against each other), with the run's dtype and chat
template (chat_template_kwargs), as the rest of the eval generates; the vLLM engines stop when the benchmarks end.
lm-eval's logged samples give one outcome per question (CulturalBench-Hard: a question is
right when all its judgements are), from which come accuracy, stderr, n and the breakdowns, and every baseline -> tuned
change, paired per question with the eval's bootstrap (eval.metrics.paired_bootstrap_delta).

results.json: metrics[<model>]["benchmarks"][<task>] = {"accuracy", "stderr", "n", "breakdown"} (percent; stderr of
the mean, as lm-eval's); comparisons[i]["benchmarks"][<task>] = {"delta", "ci_low", "ci_high", "n", "too_few"};
results["benchmarks"] = what ran (tasks, data sources and revisions, limit, few-shot, chat template, lm-eval version).
"""

import gc
import logging
import math
import statistics
from collections import defaultdict
from importlib.metadata import version

import numpy as np

from eval import metrics
from eval.benchmark_tasks import QUESTION_KEY, QUESTION_TEXT, BenchmarkInputError, task_config, task_manager
from eval.config import EvalConfig, ModelSpec

log = logging.getLogger(__name__)
COUNTRY_FIELD = {"culturalbench_easy": "country", "culturalbench_hard": "country", "blend_mcq": "country"}
COUNTRY_FIELD["normad"] = "Country"
SENSITIVITY = {"CS": "culturally_sensitive", "CA": "culturally_agnostic"}


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
    from core.llm.vllm_backend import batches_prompt_logprobs

    key = (common["pretrained"], common["dtype"])
    if key not in engines:
        configs = [cfg.model_llm_config(s) for s in cfg.model_specs]
        share_vllm_engines(configs)
        same_base = [c for c in configs if c.backend == "vllm" and (c.model, c.dtype) == key]
        adapters = [c.adapter for c in same_base if c.adapter]
        rank = same_base[0].max_lora_rank
        lora = {"lora_local_path": adapters[0], "max_lora_rank": rank} if adapters else {}
        batch_size = cfg.benchmark_spec.batch_size if batches_prompt_logprobs(bool(adapters)) else 1
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


def run_model(cfg: EvalConfig, spec: ModelSpec, task_configs: list[dict], manager, engines: dict) -> dict | None:
    """One lm-eval run of every task for one model: {task: {"samples": [...], "lm_eval": {metric: value}}}."""
    from lm_eval import simple_evaluate

    model = lm_eval_model(cfg, spec, engines)
    if model is None:
        log.warning("benchmarks: model %s skipped: its backend gives no token log-likelihoods", spec.name)
        return None
    bench = cfg.benchmark_spec
    out = simple_evaluate(
        model=model[0],
        model_args=model[1],
        tasks=task_configs,
        task_manager=manager,
        num_fewshot=bench.num_fewshot,
        batch_size=bench.batch_size,
        limit=bench.limit,
        apply_chat_template=bench.apply_chat_template,
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


def predicted(sample: dict) -> str:
    scores = [ll for ll, _ in sample["filtered_resps"]]
    return sample["arguments"][int(np.argmax(scores))][1].strip()


def question_outcomes(task: str, samples: list[dict]) -> tuple[list[dict], dict]:
    """One record per question {key, correct, text, response, group fields}; plus judgement-level counts (Hard)."""
    if task != "culturalbench_hard":
        return [_record(task, s["doc"], float(s["acc"]), predicted(s)) for s in samples], {}
    judgements: dict = defaultdict(list)
    for s in samples:
        judgements[s["doc"]["question_idx"]].append(s)
    records, incomplete = [], 0
    for group in judgements.values():
        doc = group[0]["doc"]
        if len(group) != doc["n_judgements"]:
            incomplete += 1  # a limit cut the question short: its question-level outcome is unknown
            continue
        correct = float(all(s["acc"] == 1.0 for s in group))
        records.append(_record(task, doc, correct, " / ".join(predicted(s) for s in group)))
    judged = [float(s["acc"]) for s in samples]
    extra = {"judgement_accuracy": 100.0 * float(np.mean(judged)), "judgement_n": len(judged)}
    return records, extra | {"incomplete_questions": incomplete}


def _record(task: str, doc: dict, correct: float, response: str) -> dict:
    record = {"key": str(doc[QUESTION_KEY[task]]), "correct": correct, "text": QUESTION_TEXT[task](doc)}
    record["response"] = response
    if task in COUNTRY_FIELD:
        record["country"] = str(doc[COUNTRY_FIELD[task]])
    if task == "normad":
        record["label"] = doc["Gold Label"].strip().lower()
    if task == "global_mmlu_lite_en":
        record["label"] = doc["cultural_sensitivity_label"].strip()
    return record


def accuracy(values: list[float]) -> dict:
    """Accuracy (%) with the standard error of the mean (sample stdev / sqrt(n), lm-eval's `mean_stderr`)."""
    n = len(values)
    acc = 100.0 * sum(values) / n if n else float("nan")
    stderr = 100.0 * statistics.stdev(values) / math.sqrt(n) if n > 1 else float("nan")
    return {"accuracy": acc, "stderr": stderr, "n": n}


def _by(records: list[dict], field: str) -> dict:
    groups: dict = defaultdict(list)
    for r in records:
        groups[r[field]].append(r["correct"])
    return {k: {key: v for key, v in accuracy(vals).items() if key != "stderr"} for k, vals in sorted(groups.items())}


def task_metrics(task: str, records: list[dict], extra: dict, lm_eval_results: dict) -> dict:
    """{"accuracy", "stderr", "n", "breakdown"} of one task for one model."""
    out = accuracy([r["correct"] for r in records])
    breakdown: dict = dict(extra)
    if task in COUNTRY_FIELD:
        breakdown["per_country"] = _by(records, "country")
    if task == "normad":
        breakdown["per_label"] = _by(records, "label")
    if task == "global_mmlu_lite_en":
        for label, name in SENSITIVITY.items():
            breakdown[name] = accuracy([r["correct"] for r in records if r["label"] == label])
        breakdown["gap_sensitive_minus_agnostic"] = (
            breakdown["culturally_sensitive"]["accuracy"] - breakdown["culturally_agnostic"]["accuracy"]
        )
    breakdown["lm_eval"] = lm_eval_results  # lm-eval's own aggregate (fractions), for cross-checking
    return {**out, "breakdown": breakdown}


def paired_change(base: list[dict], tuned: list[dict], cfg: EvalConfig, label: str | None = None) -> dict:
    """tuned − baseline accuracy over the questions both answered (matched by key), paired bootstrap 95% CI."""
    if label is not None:
        base, tuned = [r for r in base if r["label"] == label], [r for r in tuned if r["label"] == label]
    base_by_key = {r["key"]: r["correct"] for r in base}
    tuned_by_key = {r["key"]: r["correct"] for r in tuned}
    keys = list(dict.fromkeys([*base_by_key, *tuned_by_key]))  # every question either answered, in order
    b = np.array([base_by_key.get(k, np.nan) for k in keys], dtype=float)
    t = np.array([tuned_by_key.get(k, np.nan) for k in keys], dtype=float)
    return metrics.paired_bootstrap_delta(b, t, n_resamples=cfg.bootstrap_resamples, seed=cfg.seed)


def run_benchmarks(cfg: EvalConfig) -> tuple[dict, dict, list[dict]]:
    """{model: {task: records}} and {model: {task: metrics}} for every model with token log-likelihoods, and the
    task configs they ran."""
    bench = cfg.benchmark_spec
    manager = task_manager()
    task_configs = [task_config(manager, task, bench.data.get(task)) for task in bench.tasks]
    if bench.num_fewshot:
        lacking = [c["task"] for c in task_configs if not c.get("fewshot_split")]
        if lacking:
            raise BenchmarkInputError(f"{lacking}: benchmarks.num_fewshot > 0 needs a few-shot split (local: give it)")
    records: dict = {}
    per_model: dict = {}
    engines: dict = {}  # vLLM engines by base model, shared by its adapters
    try:
        for spec in cfg.model_specs:
            runs = run_model(cfg, spec, task_configs, manager, engines)
            if runs is None:
                continue
            records[spec.name], per_model[spec.name] = {}, {}
            for task, run in runs.items():
                recs, extra = question_outcomes(task, run["samples"])
                records[spec.name][task] = recs
                per_model[spec.name][task] = task_metrics(task, recs, extra, run["lm_eval"])
    finally:
        if engines:
            from core.llm.vllm_backend import stop_engine

            for engine in engines.values():
                stop_engine(engine.model)
    return records, per_model, task_configs


def add_benchmarks(results: dict, cfg: EvalConfig) -> None:
    """Run the benchmarks block and add its metrics, paired changes, per-question samples and provenance."""
    records, per_model, task_configs = run_benchmarks(cfg)
    bench = cfg.benchmark_spec
    for name, tasks in per_model.items():
        results["metrics"][name]["benchmarks"] = tasks
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
        comp["benchmarks"] = {task: paired_change(base[task], tuned[task], cfg) for task in base}
        if "global_mmlu_lite_en" in base:
            comp["benchmarks"]["global_mmlu_lite_en"]["breakdown"] = {
                name: paired_change(base["global_mmlu_lite_en"], tuned["global_mmlu_lite_en"], cfg, label)
                for label, name in SENSITIVITY.items()
            }
    sources = {}
    for task, ran in zip(bench.tasks, task_configs, strict=True):
        local = bench.data.get(task)
        sources[task] = (
            {"local": local}
            if local
            else {
                "dataset": ran["dataset_path"],
                "config": ran.get("dataset_name"),
                "split": ran["test_split"],
                "revision": ran.get("dataset_kwargs", {}).get("revision"),
            }
        )
    results["benchmarks"] = {
        "tasks": list(bench.tasks),
        "sources": sources,
        "limit": bench.limit,
        "num_fewshot": bench.num_fewshot,
        "apply_chat_template": bench.apply_chat_template,
        "lm_eval_version": version("lm_eval"),
        "models": list(per_model),
    }
