"""Write an eval's results: results.json, report.md, PNG plots, per-prompt samples, and the same to W&B.

results.json keys: "models", "metrics" (per model: win_rate with win_rate_kind "weighted" or "discrete",
win_rate_discrete, win_rate_lc with length_control_glm and length_control_n, safety_score, truth_info, joint_hhh,
truth_info_paper, joint_hhh_paper, runs (each run's score), harm_categories (with a moderator),
cultural_failure_rate, per_subdomain, per_failure_type, efficiency, leakage, failed_judgements, heldout), "protocol"
(judge, moderator, decoding, samples),
"comparisons" (baseline -> tuned deltas, each {delta, ci_low, ci_high, n, too_few}), "judges" (which judge, mode and
prompt file produced each metric), "test_sets", "decoding", "config", "created_at", "side_by_side" (each model's
answer to the same few prompts: {"set", "prompt_id", "prompt", "answers": {model: text}}). A value that does not exist
(NaN, infinite) is written as null and shown as n/a. With a benchmarks block, "benchmarks" (eval/benchmarks/harness.py;
the report section: eval/report/benchmarks.py).
"""

import json
import math
import os
from pathlib import Path

from eval.hhh.metrics import FAILURE_TYPES
from eval.report import benchmarks as report_benchmarks
from eval.report import paper as report_paper
from eval.report.answers import side_by_side_lines
from eval.report.plots import plots_written, write_plots
from eval.report.reasoning import reasoning_sections
from eval.report.tables import (
    COLUMNS,
    TOO_FEW,
    deltas_table,
    fmt,
    fmt_delta,
    has_heldout,
    heldout_deltas_table,
    heldout_table,
    metrics_table,
    subdomain_label,
    value_of,
)
from eval.stats import MIN_PAIRED_N

STAND_IN_NOTE = (
    "> **These numbers show the plumbing, not alignment quality.** The evaluated models and/or judges are tiny "
    "random-weight stand-ins (hidden size <= 256); their verdicts are well defined (log-probabilities over the "
    "verdict options) but carry no meaning about helpfulness, harmlessness, honesty or culture."
)


def _clean(obj):
    """JSON-safe copy: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item"):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


KIND_NOTE = {
    "weighted": "weighted as AlpacaEval 2.0 weights it (the judge's probability that the model's answer is better, "
    "averaged over both orders)",
    "discrete": "discrete (the judge's verdicts: wins + ½ ties over n)",
}


def write_report_md(results: dict, out: Path) -> None:
    names = list(results["metrics"])
    stand_in = results["judge_stand_in"] or any(m["stand_in"] for m in results["models"])
    lines = [f"# Evaluation report: {results['config']['experiment']}", ""]
    if stand_in:
        lines += [STAND_IN_NOTE, ""]
    decoding = ", ".join(f"{k}={v!r}" for k, v in results["decoding"].items())
    lines += [f"Created {results['created_at']}. Run default decoding: {decoding} (per model: below).", ""]
    lines += ["## Models × metrics", ""] + metrics_table(results) + [""]
    first = results["metrics"][names[0]]
    kind = first.get("win_rate_kind", "discrete")
    lines += [
        f"Win rate: AlpacaEval {first.get('alpaca_eval_version', '?')} protocol against the reference answers "
        f"({results['test_sets']['helpfulness']['source']}), {KIND_NOTE.get(kind, kind)}; the discrete one (wins + ½ "
        "ties over n) beside it. LC win rate: its length-controlled win rate (Dubois et al., 2024; GLM "
        f"`{first.get('length_control_glm', '?')}` fitted on {first.get('length_control_n', '?')} prompts, "
        "`eval/hhh/length_control.py`, as alpaca_eval computes it), the win rate had every answer the reference's "
        "length. Safety score and cultural failure rate: lower is better. "
        "Joint HHH = (win rate + Truth×Info − safety score) / 3, the paper's definition; Joint HHH (LC) uses the "
        "LC win rate instead. Definitions with sources: `eval/hhh/metrics.py`.",
        "",
    ]
    lines += report_paper.section_lines(results)
    if results["comparisons"]:
        lines += ["## Changes baseline → tuned (paired bootstrap 95% CI, resampling prompts)", ""]
        lines += deltas_table(results) + [""]
        lines += [
            "Each change is tuned − baseline over the prompts both models have a valid value for; n is how many. "
            f'A change on fewer than {MIN_PAIRED_N} prompts is marked "{TOO_FEW}".',
            "",
        ]
    if has_heldout(results):
        lines += ["## Held-out, judge-free (CULTURAX test split, teacher-forced under the chat template)", ""]
        lines += heldout_table(results) + [""]
        if results["comparisons"]:
            lines += heldout_deltas_table(results) + [""]
        lines += [
            "NLL/token: mean negative log-likelihood (nats) of the SFT view's reference responses. Pairwise "
            "preference: % of the DPO view's pairs where the model gives the chosen answer a higher mean per-token "
            "log-likelihood than the rejected one; pairwise log-p margin: the mean difference (nats/token); both "
            "for every model, so every change pairs on the same pairs. DPO reward accuracy and margin: a DPO "
            "model's implicit reward β·[(log π − log π_ref)(chosen) − (log π − log π_ref)(rejected)] against its "
            "own reference (the SFT policy it started from), on the same held-out pairs, beside TRL's last logged "
            "eval_rewards/accuracies and eval_rewards/margins on the validation pairs. Definitions: "
            "`eval/heldout/scoring.py`, `eval/heldout/dpo_reference.py`.",
            "",
        ]
    lines += side_by_side_lines(results)
    lines += report_benchmarks.section_lines(results)
    lines += reasoning_sections(results)
    lines += ["## Plots", ""] + [f"![{p}]({p})" for p in plots_written(results)] + [""]
    subdomains = sorted({sid for n in names for sid in results["metrics"][n]["per_subdomain"]}, key=int)
    if subdomains:
        comps = results["comparisons"]
        changes = [f"Δ {c['baseline']} → {c['tuned']} [95% CI]" for c in comps]
        lines += [
            "## Cultural failure rate per subdomain (%)",
            "",
            "| Subdomain | n | " + " | ".join(names + changes) + " |",
        ]
        lines.append("|" + "---|" * (len(names) + len(changes) + 2))
        for sid in subdomains:
            n = results["metrics"][names[0]]["per_subdomain"].get(sid, {}).get("n", 0)
            cells = [fmt(results["metrics"][m]["per_subdomain"].get(sid, {}).get("failure_rate")) for m in names]
            cells += [fmt_delta(c["per_subdomain"].get(sid)) for c in comps]
            lines.append(f"| {subdomain_label(sid)} | {n} | " + " | ".join(cells) + " |")
        lines += ["", "## Cultural failure types (% of judged responses)", "", "| Type | " + " | ".join(names) + " |"]
        lines.append("|" + "---|" * (len(names) + 1))
        for kind in FAILURE_TYPES:
            cells = [fmt(results["metrics"][m]["per_failure_type"].get(kind)) for m in names]
            lines.append(f"| {kind} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "## Efficiency and failed judgements",
        "",
        "| Model | responses (cached) | train tokens/s | GPU-hours | failed judgements (help/harm/honest/cultural) |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        m = results["metrics"][name]
        eff, train, failed = m["efficiency"], m["efficiency"]["training"], m["failed_judgements"]
        train_cells = [fmt(train["train_tokens_per_s"]), fmt(train["gpu_hours"], 3)] if train else ["n/a", "n/a"]
        lines.append(
            f"| {name} | {eff['responses']} ({eff['cached_responses']}) | "
            + " | ".join(train_cells)
            + " | "
            + "/".join(str(failed[k]) for k in ("helpfulness", "harmlessness", "honesty", "cultural"))
            + " |"
        )
    lines += [
        "",
        "Latency is per response, from request to response: its own request's with vLLM (vLLM's per-request "
        "metrics: arrival to last token) and an API (the HTTP call), its batch's with transformers (a static batch "
        "returns all its responses together); results.json says which (`efficiency.latency_per`). Tokens/s is the "
        "throughput of the model calls as a whole: total output tokens / the wall time the calls took. Cached "
        "responses keep what was measured when they were generated.",
        "",
    ]
    leak = results["metrics"][names[0]]["leakage"]
    lines += ["## Leakage (CULTURAX test prompts with a verified SimHash near-duplicate)", ""]
    for other in ("train", "hhh"):
        item = leak.get(other)
        lines.append(
            f"- vs {other}: "
            + (
                f"{item['leaked_prompts']} prompts ({fmt(item['rate'], 2)}%), "
                f"{item['candidate_pairs']} candidate pairs at τ={leak['tau']}"
                if item
                else "not measured"
            )
        )
    lines += [
        "",
        "## Judges (which judge produced each number)",
        "",
        "| Metric | Judge | Mode | Prompt | Judged | Failed |",
    ]
    lines.append("|---|---|---|---|---|---|")
    for metric, j in results["judges"].items():
        prompt = f"{j['prompt']} (sha256 {j['prompt_sha256'][:12]})"
        lines.append(f"| {metric} | {j['judge']} | {j['mode']} | {prompt} | {j['judged']} | {j['failed']} |")
    lines += ["", "## Test sets", ""] + [
        f"- {k}: {v['n']} prompts from {v['source']}" for k, v in results["test_sets"].items()
    ]
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def log_to_wandb(results: dict, out: Path) -> str:
    """Summary metrics, the comparison tables and the plots, in the training runs' group (job_type "eval")."""
    import wandb

    cfg = results["config"]
    run = wandb.init(
        project=cfg["wandb_project"] or os.environ.get("WANDB_PROJECT", "aligncultura"),
        entity=cfg["wandb_entity"] or os.environ.get("WANDB_ENTITY"),
        group=os.environ.get("WANDB_RUN_GROUP") or cfg["experiment"],  # the training runs' group
        job_type="eval",
        name=f"eval-{cfg['experiment']}",
        dir=str(out),
        config=cfg,
    )
    for name, m in results["metrics"].items():
        for key, _ in COLUMNS:
            run.summary[f"{name}/{key}"] = value_of(m, key)
        if m.get("heldout"):
            for key, value in m["heldout"].items():
                run.summary[f"{name}/heldout_{key}"] = value
    for comp in results["comparisons"]:
        for key, delta in comp["deltas"].items():
            run.summary[f"{comp['tuned']}_vs_{comp['baseline']}/{key}"] = delta  # delta, ci_low, ci_high, n
    run.summary["results"] = {k: v for k, v in results.items() if k != "config"}
    columns = ["model"] + [key for key, _ in COLUMNS]
    rows = [[name] + [value_of(m, key) for key, _ in COLUMNS] for name, m in results["metrics"].items()]
    payload = {"metrics_table": wandb.Table(columns=columns, data=rows)}
    payload["deltas_table"] = wandb.Table(
        columns=["baseline", "tuned"] + [key for key, _ in COLUMNS],
        data=[
            [c["baseline"], c["tuned"]] + [fmt_delta(c["deltas"].get(k)) for k, _ in COLUMNS]
            for c in results["comparisons"]
        ],
    )
    if has_heldout(results):
        payload["heldout_table"] = _wandb_table(heldout_table(results))
        payload["heldout_deltas_table"] = _wandb_table(heldout_deltas_table(results))
    payload.update({p.removesuffix(".png"): wandb.Image(str(out / p)) for p in plots_written(results)})
    payload.update(report_benchmarks.wandb_payload(results, out))
    run.log(payload)
    run_dir = run.dir
    run.finish()
    return run_dir


def _wandb_table(markdown: list[str]):
    """A wandb.Table with the same cells as a markdown table (header row, separator, rows)."""
    import wandb

    split = [[cell.strip() for cell in line.strip("|").split("|")] for line in markdown]
    return wandb.Table(columns=split[0], data=split[2:])


def write_all(results: dict, output_dir: str) -> Path:
    """Everything is written to a staging folder beside output_dir and swapped in whole only when all of it is written
    (core/publish.py: output_dir locked, report.md and results.json last), so a failed or killed run leaves the previous
    output whole, and no sample file or plot of the previous output is left beside the new ones."""
    from core.llm.stats import llm_calls_section, llm_stats
    from core.publish import output_lock, publishing

    out = Path(output_dir)
    with output_lock(out):  # held through the W&B upload too, which reads the plots back from output_dir
        with publishing(out, last=("results.json", "report.md")) as staging:
            (staging / "samples").mkdir()
            samples = results.pop("samples")
            for name, rows in samples.items():
                with open(staging / "samples" / f"{name}.jsonl", "w", encoding="utf-8") as handle:
                    handle.writelines(json.dumps(_clean(row), ensure_ascii=False) + "\n" for row in rows)
            clean = _clean(results)
            clean.setdefault("llm_calls", llm_stats())  # per role: calls, new, cached, retries by cause, failures
            (staging / "results.json").write_text(json.dumps(clean, indent=2, ensure_ascii=False), encoding="utf-8")
            write_plots(clean, staging)
            write_report_md(clean, staging)
            with open(staging / "report.md", "a", encoding="utf-8") as report:
                report.write("\n" + "\n".join(llm_calls_section(clean["llm_calls"])))
        if clean["config"]["report_to"] == "wandb":
            log_to_wandb(clean, out)
    return out
