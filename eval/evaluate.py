"""One eval run: generate with each model, judge every response, compute metrics and baseline -> tuned changes.

Models generate first, one load at a time (eval.hhh.generation.model_groups: a vLLM engine serves a base model and its
adapters, then stops), then the judges are loaded once and judge every model, then the benchmarks run: one model or
engine is loaded at any time. Per-prompt verdicts are kept as arrays (NaN = failed judgement) so the same arrays give
the point metrics and the paired bootstrap CIs.
"""

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from datasets import Dataset

from eval import stats
from eval.benchmarks.harness import add_benchmarks
from eval.config import EvalConfig, ModelSpec
from eval.decoding import ThinkReader
from eval.heldout import scoring as heldout
from eval.heldout.dpo_reference import dpo_runs
from eval.hhh import length_control, length_data, metrics, paper, samples
from eval.hhh.generation import build_model_llm, generate_responses, model_groups
from eval.hhh.judges import Judge, build_judges, close_judges
from eval.hhh.moderation import category_rates
from eval.hhh.testsets import ALPACA_EVAL_VERSION, load_test_sets, source_of

log = logging.getLogger(__name__)
FLAG = {"unsafe": 1.0, "safe": 0.0, "yes": 1.0, "no": 0.0}
HEADLINE = ("win_rate", "safety_score", "truth_info", "joint_hhh", "cultural_failure_rate")
EFFICIENCY = ("output_tokens_per_response", "latency_s_per_response", "tokens_per_s")


def _flags(labels: list[str | None]) -> np.ndarray:
    return np.array([np.nan if label is None else FLAG[label] for label in labels])


def subdomain_context(subdomains: list[int]) -> str:
    from data_pipeline import taxonomy

    return "; ".join(f"{taxonomy.get(s).name} ({taxonomy.get(s).domain})" for s in subdomains) or "unspecified"


def judge_responses(judges: dict[str, Judge], sets: dict[str, Dataset], responses: dict[str, list[dict]]) -> dict:
    """Per-prompt arrays: helpfulness (the headline preference: weighted from a log-probability judge, else the
    pairwise score) and helpfulness_discrete (the pairwise score), harmlessness (unsafe flag), truthful, informative
    and, with CULTURAX, cultural failure labels (samples.judge_answered derives honesty, Truth×Info, from the two
    flags); "reasons": per set, each judged response's judge reasons by metric."""
    scores = {}
    helpful, answers = sets["helpfulness"], [r["text"] for r in responses["helpfulness"]]
    triples = list(zip(helpful["prompt"], answers, helpful["reference"], strict=True))
    as_a = judges["helpfulness"].judge([{"instruction": p, "output_a": a, "output_b": ref} for p, a, ref in triples])
    as_b = judges["helpfulness"].judge([{"instruction": p, "output_a": ref, "output_b": a} for p, a, ref in triples])
    discrete = np.array([metrics.pairwise_score(a.label, b.label) for a, b in zip(as_a, as_b, strict=True)])
    weighted = [metrics.weighted_preference(a.probabilities, b.probabilities) for a, b in zip(as_a, as_b, strict=True)]
    weighted_kind = win_rate_kind(judges["helpfulness"].spec.mode) == "weighted"
    scores["helpfulness"] = np.array(weighted) if weighted_kind else discrete
    scores["helpfulness_discrete"] = discrete
    reasons = {"helpfulness": [{"helpfulness_model_as_a": a.reason, "helpfulness_model_as_b": b.reason}
                               for a, b in zip(as_a, as_b, strict=True)]}  # fmt: skip

    harmful = sets["harmlessness"]
    items = [
        {"prompt": p, "response": r["text"]} for p, r in zip(harmful["prompt"], responses["harmlessness"], strict=True)
    ]
    safety = judges["safety"].judge(items)
    scores["harmlessness"] = _flags([j.label for j in safety])
    reasons["harmlessness"] = [{"safety": j.reason} for j in safety]
    if judges["safety"].moderator is not None:  # Beaver-Dam's per-category flags of the same items
        scores["harm_categories"] = judges["safety"].moderator.category_flags(items)

    honest = sets["honesty"]
    qa = [
        {
            "question": row["prompt"],
            "answer": response["text"],
            "correct_answers": "\n".join(f"- {a}" for a in row["correct_answers"]),
            "incorrect_answers": "\n".join(f"- {a}" for a in row["incorrect_answers"]),
        }
        for row, response in zip(honest, responses["honesty"], strict=True)
    ]
    truthful = judges["truthfulness"].judge(qa)
    informative = judges["informativeness"].judge([{"question": q["question"], "answer": q["answer"]} for q in qa])
    scores["truthful"], scores["informative"] = (
        _flags([j.label for j in truthful]),
        _flags([j.label for j in informative]),
    )
    reasons["honesty"] = [{"truthfulness": t.reason, "informativeness": i.reason}
                          for t, i in zip(truthful, informative, strict=True)]  # fmt: skip

    if "culturax" in sets:
        cx = sets["culturax"]
        cultural = judges["cultural"].judge(
            [
                {"prompt": row["prompt"], "response": response["text"], "context": subdomain_context(row["subdomains"])}
                for row, response in zip(cx, responses["culturax"], strict=True)
            ]
        )
        scores["cultural"] = [j.label for j in cultural]
        reasons["culturax"] = [{"cultural": j.reason} for j in cultural]
    scores["reasons"] = reasons
    return scores


def win_rate_kind(helpfulness_mode: str) -> str:
    """ "weighted" (AlpacaEval 2.0's: the judge's probability of the model's answer) when the helpfulness judge works
    from log-probabilities, else "discrete" (wins + ½ ties)."""
    return "weighted" if helpfulness_mode == "logprobs" else "discrete"


def model_metrics(scores: dict, responses: dict[str, list[dict]], subdomains, spec: ModelSpec, run: dict) -> dict:
    """Headline metrics from per-prompt ``scores``; ``run`` (samples_per_prompt, sample_scores, token_split) comes
    from run_eval."""
    win, safety = metrics.win_rate(scores["helpfulness"]), metrics.safety_score(scores["harmlessness"])
    ti = stats.mean_percent(scores["honesty"])  # = truth_info(truthful, informative), averaged over samples
    out = {"win_rate": win, "safety_score": safety, "truth_info": ti, "joint_hhh": metrics.joint_hhh(win, ti, safety)}
    out.update(win_rate_kind=run["win_rate_kind"], win_rate_discrete=metrics.win_rate(scores["helpfulness_discrete"]))
    out.update(paper.paper_metrics(scores, out["win_rate_discrete"], safety))  # the paper's WR: discrete verdicts
    out["runs"] = paper.run_scores(run["sample_scores"], run["samples_per_prompt"])
    if "harm_categories" in run["sample_scores"]:
        out["harm_categories"] = category_rates(run["sample_scores"]["harm_categories"], run["samples_per_prompt"])
    win_lc = length_control.lc_win_rate(run["helpful_annotations"], run["glm"])
    out.update(win_rate_lc=win_lc, joint_hhh_lc=metrics.joint_hhh(win_lc, ti, safety))
    out.update(alpaca_eval_version=ALPACA_EVAL_VERSION, length_control_glm=length_control.glm_name(run["glm"]))
    out["length_control_n"] = int(np.isfinite(scores["helpfulness"]).sum())  # the prompts the GLM was fitted on
    out["truthful"] = stats.mean_percent(scores["truthful"])
    out["informative"] = stats.mean_percent(scores["informative"])
    if "cultural" in scores:
        cultural = metrics.cultural_failure_rates(scores["cultural"], subdomains, run["samples_per_prompt"])
        out["cultural_failure_rate"] = cultural["overall"]
        out["per_subdomain"] = cultural["per_subdomain"]
        out["per_failure_type"] = cultural["per_type"]
    else:
        out.update(cultural_failure_rate=float("nan"), per_subdomain={}, per_failure_type={})
    everything = [r for rs in responses.values() for r in rs]
    efficiency = metrics.generation_efficiency(
        *([r[key] for r in everything] for key in ("output_tokens", "latency_s", "wall_s"))
    )
    efficiency["latency_per"] = run["latency_per"]
    efficiency["cached_responses"] = sum(r["cached"] for r in everything)
    efficiency.update(samples.efficiency_split(everything, run["token_split"]))
    efficiency["training"] = (
        metrics.training_efficiency([_train_results(p) for p in spec.train_runs]) if spec.train_runs else None
    )
    out["efficiency"] = efficiency
    out["no_final_answer_rate"] = samples.no_final_answer_rates(responses)
    out["failed_judgements"] = samples.failed_judgements(run["sample_scores"], responses)
    return out


def helpful_annotations(scores: np.ndarray, responses: dict, sets: dict[str, Dataset], glm):
    """The LC win rate's inputs: per-prompt pairwise score, answer length (characters the judge saw, mean over the
    prompt's samples) and reference length."""
    answers = [{"chars": len(r["text"]), "sample": r["sample"]} for r in responses["helpfulness"]]
    helpful = sets["helpfulness"]
    references = [len(text) for text in helpful["reference"]]
    chars = samples.per_prompt({"helpfulness": answers}, "chars")
    return length_control.annotations(scores, chars, references, helpful["id"], glm)


def _train_results(run_dir: str) -> dict:
    path = Path(run_dir) / "train_results.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: train_results.json not found (a training run's output_dir)")
    record = json.loads(path.read_text())
    for key in ("train_runtime", "train_tokens", "gpu_hours"):
        if key not in record:
            raise ValueError(f"{path}: field '{key}': missing")
    return record


def compare(base: dict, tuned: dict, cfg: EvalConfig) -> dict:
    """Every headline change tuned − baseline with a paired bootstrap 95% CI (fixed seed, prompts resampled)."""
    boot = {"n_resamples": cfg.bootstrap_resamples, "seed": cfg.seed}
    deltas = {
        "win_rate": stats.paired_bootstrap_delta(base["scores"]["helpfulness"], tuned["scores"]["helpfulness"], **boot),
        "win_rate_discrete": stats.paired_bootstrap_delta(
            base["scores"]["helpfulness_discrete"], tuned["scores"]["helpfulness_discrete"], **boot
        ),
        "safety_score": stats.paired_bootstrap_delta(
            base["scores"]["harmlessness"], tuned["scores"]["harmlessness"], **boot
        ),
        "truth_info": stats.paired_bootstrap_delta(base["scores"]["honesty"], tuned["scores"]["honesty"], **boot),
        "joint_hhh": metrics.paired_bootstrap_joint_hhh(base["scores"], tuned["scores"], **boot),
        "truth_info_paper": paper.paired_truth_info_paper(base["scores"], tuned["scores"], **boot),
    }
    paper_scores = [{**run["scores"], "helpfulness": run["scores"]["helpfulness_discrete"]} for run in (base, tuned)]
    honesty = paper.honesty_draws(base["scores"], tuned["scores"])
    deltas["joint_hhh_paper"] = metrics.paired_bootstrap_joint_hhh(*paper_scores, **boot, honesty=honesty)
    helpful = base["helpful_annotations"], tuned["helpful_annotations"]
    lc_draws = length_control.paired_draws(*helpful, base["glm"])  # one fit per resample for both deltas
    deltas["win_rate_lc"] = length_control.paired_lc_delta(lc_draws, *helpful, **boot)
    deltas["joint_hhh_lc"] = metrics.paired_bootstrap_joint_hhh(
        base["scores"], tuned["scores"], **boot, helpfulness=lc_draws
    )
    per_subdomain = {}
    if "cultural" in base["scores"]:
        b_fail, t_fail = base["scores"]["cultural_failure"], tuned["scores"]["cultural_failure"]
        deltas["cultural_failure_rate"] = stats.paired_bootstrap_delta(b_fail, t_fail, **boot)
        for sid in base["metrics"]["per_subdomain"]:
            rows = [i for i, subs in enumerate(base["subdomains"]) if int(sid) in subs]
            per_subdomain[sid] = stats.paired_bootstrap_delta(b_fail[rows], t_fail[rows], **boot)
    deltas.update(samples.efficiency_deltas(base["responses"], tuned["responses"], **boot))
    if base.get("heldout_scores") is not None and tuned.get("heldout_scores") is not None:
        deltas.update(heldout.heldout_deltas(base["heldout_scores"], tuned["heldout_scores"], **boot))
    return {"deltas": deltas, "per_subdomain": per_subdomain}


def leakage(sets: dict[str, Dataset], train: Dataset | None, tau: int) -> dict:
    """CULTURAX test prompts with a verified SimHash near-duplicate among the train prompts or the HHH sets."""
    if "culturax" not in sets:
        return {"tau": tau, "train": None, "hhh": None}
    from data_pipeline.dedup import DedupConfig, cross_pairs, fingerprint, verify_pairs

    dedup_cfg = DedupConfig(tau=tau)
    test = list(sets["culturax"]["prompt"])
    test_fps = fingerprint(test)
    others = {
        "train": list(train["prompt"]) if train is not None else [],
        "hhh": [p for name in ("helpfulness", "harmlessness", "honesty") for p in sets[name]["prompt"]],
    }
    out: dict = {"tau": tau}
    for name, texts in others.items():
        if not texts:
            out[name] = None
            continue
        pairs = cross_pairs(test_fps, fingerprint(texts), tau)
        out[name] = metrics.leakage_counts(pairs, verify_pairs(test, texts, pairs, dedup_cfg), len(test))
    return out


def generate_group(cfg: EvalConfig, group: list[ModelSpec], sets: dict, heldout_data: dict | None) -> dict:
    """Responses and held-out scores of the models loaded together (eval.hhh.generation.model_groups); the model (or
    vLLM engine) is freed when the group is done, before the next one loads."""
    llms = {spec.name: build_model_llm(cfg, spec) for spec in group}
    out = {}
    try:
        for spec in group:
            decoding, llm = cfg.decodings[spec.name], llms[spec.name]
            reader = ThinkReader.for_model(spec, decoding)
            responses = {name: generate_responses(llm, ds, cfg, decoding, reader) for name, ds in sets.items()}
            held = heldout.model_scores(cfg, spec, llm, heldout_data) if heldout_data is not None else None
            out[spec.name] = {"responses": responses, "reader": reader, "heldout_scores": held}
    finally:
        for llm in llms.values():
            llm.close()
    return out


def run_eval(cfg: EvalConfig) -> dict:
    sets, train = load_test_sets(cfg)
    limit = cfg.max_prompts("culturax")  # the held-out views are CULTURAX's test split too
    heldout_data = (
        heldout.load_heldout(cfg.heldout_data, cfg.heldout_split, limit, cfg.seed) if cfg.heldout_data else None
    )
    glm = length_data.glm_data_of(cfg)
    subdomains = list(sets["culturax"]["subdomains"]) if "culturax" in sets else []
    generated: dict[str, dict] = {}
    for group in model_groups(cfg):
        generated.update(generate_group(cfg, group, sets, heldout_data))
    judges = build_judges(cfg)
    runs: dict[str, dict] = {}
    try:
        for spec in cfg.model_specs:
            responses, reader = generated[spec.name]["responses"], generated[spec.name]["reader"]
            k = cfg.decodings[spec.name].samples_per_prompt
            expanded = {name: samples.repeat_rows(ds, k) for name, ds in sets.items()}  # one row per response
            sample_scores = samples.judge_answered(judge_responses, judges, expanded, responses)
            scores = samples.collapse_to_prompts(sample_scores, k)
            run = {"samples_per_prompt": k, "sample_scores": sample_scores, "token_split": reader.token_split}
            run["win_rate_kind"] = win_rate_kind(cfg.judge_specs["helpfulness"].mode)
            run["glm"] = glm
            run["helpful_annotations"] = helpful_annotations(scores["helpfulness"], responses, sets, glm)
            run["latency_per"] = "batch" if cfg.model_llm_config(spec).backend == "transformers" else "request"
            runs[spec.name] = {"responses": responses, "scores": scores, "subdomains": subdomains}
            runs[spec.name].update(run, expanded=expanded, prompt_opens_think=reader.prompt_opens)
            runs[spec.name]["heldout_scores"] = generated[spec.name]["heldout_scores"]
            runs[spec.name]["metrics"] = {**model_metrics(scores, responses, subdomains, spec, run), "heldout": None}
    finally:
        close_judges(judges)
    if heldout_data is not None:
        heldout.attach_heldout(runs, dpo_runs(cfg))
    leak = leakage(sets, train, cfg.leakage_tau)
    comparisons = []
    for spec in cfg.model_specs:
        baseline = cfg.baseline_of(spec)
        if baseline is not None:
            differences = cfg.decodings[spec.name].differences(cfg.decodings[baseline])
            comparisons.append(
                {
                    "baseline": baseline,
                    "tuned": spec.name,
                    "decoding_shared": not differences,
                    "decoding_differences": differences,
                    **compare(runs[baseline], runs[spec.name], cfg),
                }
            )
    results = {
        "models": [
            {
                "name": s.name,
                "model": s.model,
                "adapter": s.adapter,
                "backend": s.backend or cfg.backend,
                "baseline": cfg.baseline_of(s),
                "train_runs": s.train_runs,
                "stand_in": is_stand_in(s.model),
                "decoding": cfg.decodings[s.name].to_dict(),
                "prompt_opens_think": runs[s.name]["prompt_opens_think"],
            }
            for s in cfg.model_specs
        ],
        "metrics": {name: {**run["metrics"], "leakage": leak} for name, run in runs.items()},
        "comparisons": comparisons,
        "judges": {metric: judge.describe() for metric, judge in judges.items()},
        "protocol": paper.protocol(cfg, judges),
        "judge_stand_in": any(is_stand_in(spec.model) for spec in cfg.judge_specs.values()),
        "test_sets": {name: {"source": source_of(cfg, name), "n": len(ds)} for name, ds in sets.items()},
        "decoding": {
            k: getattr(cfg, k)
            for k in ("temperature", "top_p", "max_new_tokens", "seed", "system_prompt", "repetition_penalty")
        },
        "config": cfg.to_dict(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "samples": {name: _samples(run["expanded"], run) for name, run in runs.items()},
        "side_by_side": samples.side_by_side(sets, {name: run["responses"] for name, run in runs.items()}),
    }
    if cfg.benchmark_spec is not None:  # lm-eval benchmarks for every model (eval/benchmarks/harness.py)
        add_benchmarks(results, cfg)
    return results


def is_stand_in(model: str) -> bool:
    """A local model small enough to be a random-weight stand-in (hidden size <= 256): its numbers are plumbing."""
    config = Path(model) / "config.json"
    return config.exists() and json.loads(config.read_text()).get("hidden_size", 10**9) <= 256


def _samples(sets: dict[str, Dataset], run: dict) -> list[dict]:
    """Per-response records and verdict values, for samples/<model>.jsonl (inspection, not metrics)."""
    rows = []
    for name, ds in sets.items():
        for i, (prompt, response) in enumerate(zip(ds["prompt"], run["responses"][name], strict=True)):
            rows.append(
                {
                    "set": name,
                    "id": response["id"],
                    "sample": response["sample"],
                    "prompt": prompt,
                    "response": response["raw"],
                    "judged": response["text"],  # what the judges saw (reasoning stripped)
                    "think_state": response["think_state"],
                    **_verdict(run["sample_scores"], name, i),
                }
            )
    return rows


def _verdict(scores: dict, name: str, i: int) -> dict:
    reasons = {"judge_reasons": scores["reasons"][name][i]} if scores["reasons"][name][i] else {}
    if name == "helpfulness":
        preference = float(scores["helpfulness"][i])  # the headline's: weighted or the pairwise score
        return {"pairwise_score": float(scores["helpfulness_discrete"][i]), "preference": preference, **reasons}
    if name == "harmlessness":
        return {"unsafe": float(scores["harmlessness"][i]), **reasons}
    if name == "honesty":
        return {"truthful": float(scores["truthful"][i]), "informative": float(scores["informative"][i]), **reasons}
    return {"cultural_label": scores["cultural"][i], **reasons}
