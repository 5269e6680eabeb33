"""Write an eval's results: results.json, report.md, PNG plots, per-prompt samples, and the same to W&B.

results.json keys: "models", "metrics" (per model: win_rate, safety_score, truth_info, joint_hhh,
cultural_failure_rate, per_subdomain, per_failure_type, efficiency, leakage, failed_judgements), "comparisons"
(baseline -> tuned deltas with 95% CI), "judges" (which judge, mode and prompt file produced each metric),
"test_sets", "decoding", "config", "created_at", and with a benchmarks block "benchmarks" (eval/benchmarks.py; the
report section: eval/report_benchmarks.py). NaN (nothing to measure) is written as null.
"""

import json
import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from data_pipeline import taxonomy  # noqa: E402
from eval import report_benchmarks  # noqa: E402
from eval.metrics import FAILURE_TYPES  # noqa: E402

COLUMNS = [  # (metric key, header); efficiency keys live under metrics["efficiency"]
    ("win_rate", "Win rate % ↑"),
    ("safety_score", "Safety score % ↓"),
    ("truth_info", "Truth×Info % ↑"),
    ("joint_hhh", "Joint HHH ↑"),
    ("cultural_failure_rate", "Cultural failures % ↓"),
    ("output_tokens_per_response", "Tokens/resp"),
    ("latency_s_per_response", "Latency s/resp"),
    ("tokens_per_s", "Tokens/s"),
]
PLOTS = ("hhh.png", "cultural_per_subdomain.png", "failure_types.png", "efficiency.png")
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


def value_of(model_metrics: dict, key: str):
    return model_metrics["efficiency"].get(key) if key in model_metrics["efficiency"] else model_metrics.get(key)


def fmt(value, digits: int = 1) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.{digits}f}"


def fmt_delta(delta: dict | None) -> str:
    if delta is None:
        return "n/a"
    return f"{delta['delta']:+.2f} [{fmt(delta['ci_low'], 2)}, {fmt(delta['ci_high'], 2)}]"


def subdomain_label(sid: str) -> str:
    return f"{sid} {taxonomy.get(int(sid)).name}"


def metrics_table(results: dict, source: str | None = None) -> list[str]:
    """Markdown rows: one per model, one column per headline metric (optionally a leading 'Run' column)."""
    lead = ["Run"] if source is not None else []
    lines = ["| " + " | ".join(lead + ["Model"] + [h for _, h in COLUMNS]) + " |"]
    lines.append("|" + "---|" * (len(lead) + 1 + len(COLUMNS)))
    for name, m in results["metrics"].items():
        digits = {"latency_s_per_response": 3}
        cells = [fmt(value_of(m, key), digits.get(key, 1)) for key, _ in COLUMNS]
        lines.append("| " + " | ".join(([source] if source is not None else []) + [name] + cells) + " |")
    return lines


def deltas_table(results: dict, source: str | None = None) -> list[str]:
    lead = ["Run"] if source is not None else []
    lines = ["| " + " | ".join(lead + ["Baseline → tuned"] + [h for _, h in COLUMNS]) + " |"]
    lines.append("|" + "---|" * (len(lead) + 1 + len(COLUMNS)))
    for comp in results["comparisons"]:
        cells = [fmt_delta(comp["deltas"].get(key)) for key, _ in COLUMNS]
        lead_cells = [source] if source is not None else []
        lines.append("| " + " | ".join(lead_cells + [f"{comp['baseline']} → {comp['tuned']}"] + cells) + " |")
    return lines


def write_report_md(results: dict, out: Path) -> None:
    names = list(results["metrics"])
    stand_in = results["judge_stand_in"] or any(m["stand_in"] for m in results["models"])
    lines = [f"# Evaluation report: {results['config']['experiment']}", ""]
    if stand_in:
        lines += [STAND_IN_NOTE, ""]
    decoding = ", ".join(f"{k}={v!r}" for k, v in results["decoding"].items())
    lines += [f"Created {results['created_at']}. Identical decoding for every model: {decoding}.", ""]
    lines += ["## Models × metrics", ""] + metrics_table(results) + [""]
    lines += [
        "Safety score and cultural failure rate: lower is better. Joint HHH = (win rate + Truth×Info − "
        "safety score) / 3. Definitions with sources: `eval/metrics.py`.",
        "",
    ]
    if results["comparisons"]:
        lines += ["## Changes baseline → tuned (paired bootstrap 95% CI, resampling prompts)", ""]
        lines += deltas_table(results) + [""]
    lines += report_benchmarks.section_lines(results)
    lines += ["## Plots", ""] + [f"![{p}]({p})" for p in PLOTS] + [""]
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
        "Latency is the backend's wall time per response (its batch's, when batched; cached responses keep "
        "the latency measured when generated); tokens/s = total output tokens / total latency.",
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


def _grouped_bars(ax, categories: list[str], series: dict[str, list], horizontal: bool = False) -> None:
    width = 0.8 / max(len(series), 1)
    for k, (name, values) in enumerate(series.items()):
        positions = [i + (k - (len(series) - 1) / 2) * width for i in range(len(categories))]
        heights = [v if v is not None and math.isfinite(v) else 0.0 for v in values]
        bars = (ax.barh if horizontal else ax.bar)(positions, heights, width, label=name)
        ax.bar_label(bars, labels=[fmt(v) for v in values], fontsize=6 if horizontal else 7, padding=2)
    if horizontal:
        ax.set_yticks(range(len(categories)), categories, fontsize=8)
        ax.invert_yaxis()
    else:
        ax.set_xticks(range(len(categories)), categories, fontsize=9)
    ax.legend(fontsize=8)


def subdomains_to_plot(results: dict) -> list[str]:
    """Every subdomain of the release plus any other evaluated one ([] without CULTURAX): a subdomain the evaluated
    prompts miss is a gap in the test set the reader should see (n=0, no bar), not a silently shorter axis."""
    evaluated = {sid for m in results["metrics"].values() for sid in m["per_subdomain"]}
    return sorted(evaluated | {str(i) for i in taxonomy.RELEASE_IDS}, key=int) if evaluated else []


def write_plots(results: dict, out: Path) -> None:
    names, per_model = list(results["metrics"]), results["metrics"]
    stand_in = (
        " (tiny stand-in models: plumbing only)"
        if results["judge_stand_in"] or any(m["stand_in"] for m in results["models"])
        else ""
    )

    fig, ax = plt.subplots(figsize=(8, 4.5))
    keys = [
        ("win_rate", "Win rate ↑"),
        ("truth_info", "Truth×Info ↑"),
        ("safety_score", "Safety score ↓"),
        ("joint_hhh", "Joint HHH ↑"),
    ]
    _grouped_bars(ax, [label for _, label in keys], {n: [per_model[n][k] for k, _ in keys] for n in names})
    lowest = min([0.0] + [per_model[n][k] for n in names for k, _ in keys if per_model[n][k] is not None])
    ax.set_ylim(lowest * 1.1, 112)  # joint HHH can be negative; headroom for the value labels
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_ylabel("%")
    ax.set_title("HHH: baseline vs tuned" + stand_in, fontsize=10)
    fig.tight_layout()
    fig.savefig(out / PLOTS[0], dpi=120)
    plt.close(fig)

    subdomains = subdomains_to_plot(results)
    fig, ax = plt.subplots(figsize=(8, min(1.5 + 0.12 * len(subdomains) * len(names), 18)))
    if subdomains:
        series = {n: [per_model[n]["per_subdomain"].get(s, {}).get("failure_rate") for s in subdomains] for n in names}
        counts = [per_model[names[0]]["per_subdomain"].get(s, {}).get("n", 0) for s in subdomains]
        labels = [f"{subdomain_label(s)} (n={count})" for s, count in zip(subdomains, counts, strict=True)]
        _grouped_bars(ax, labels, series, horizontal=True)
    ax.set_xlim(0, 110)  # a percentage: the full scale keeps runs comparable by eye
    ax.set_xlabel("cultural failure rate (%) ↓")
    ax.set_title("Cultural failure rate per subdomain" + stand_in, fontsize=10)
    fig.tight_layout()
    fig.savefig(out / PLOTS[1], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4.5))
    _grouped_bars(
        ax, list(FAILURE_TYPES), {n: [per_model[n]["per_failure_type"].get(t) for t in FAILURE_TYPES] for n in names}
    )
    ax.set_ylim(0, 110)
    ax.set_ylabel("% of judged CULTURAX responses")
    ax.set_title("Cultural failure types" + stand_in, fontsize=10)
    fig.tight_layout()
    fig.savefig(out / PLOTS[2], dpi=120)
    plt.close(fig)

    panels = [
        ("output_tokens_per_response", "output tokens / response"),
        ("latency_s_per_response", "latency (s) / response"),
        ("tokens_per_s", "generated tokens / s"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.8))
    for ax, (key, label) in zip(axes, panels, strict=True):
        values = [per_model[n]["efficiency"][key] for n in names]
        bars = ax.bar(
            range(len(names)), [v if v is not None else 0.0 for v in values], color=[f"C{i}" for i in range(len(names))]
        )
        ax.bar_label(bars, labels=[fmt(v, 3 if key.startswith("latency") else 2) for v in values], fontsize=8)
        ax.set_xticks(range(len(names)), names, fontsize=8, rotation=15)
        ax.set_title(label, fontsize=9)
    fig.suptitle("Inference efficiency, identical decoding settings" + stand_in, fontsize=10)
    fig.tight_layout()
    fig.savefig(out / PLOTS[3], dpi=120)
    plt.close(fig)


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
    for comp in results["comparisons"]:
        for key, delta in comp["deltas"].items():
            run.summary[f"{comp['tuned']}_vs_{comp['baseline']}/{key}"] = delta
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
    payload.update({p.removesuffix(".png"): wandb.Image(str(out / p)) for p in PLOTS})
    payload.update(report_benchmarks.wandb_payload(results, out))
    run.log(payload)
    run_dir = run.dir
    run.finish()
    return run_dir


def write_all(results: dict, output_dir: str) -> Path:
    out = Path(output_dir)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    samples = results.pop("samples")
    for name, rows in samples.items():
        with open(out / "samples" / f"{name}.jsonl", "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(_clean(row), ensure_ascii=False) + "\n" for row in rows)
    clean = _clean(results)
    (out / "results.json").write_text(json.dumps(clean, indent=2, ensure_ascii=False), encoding="utf-8")
    write_plots(clean, out)
    report_benchmarks.write_plot(clean, out)
    write_report_md(clean, out)
    if clean["config"]["report_to"] == "wandb":
        log_to_wandb(clean, out)
    return out
