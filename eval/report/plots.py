"""The report's PNG plots (matplotlib, Agg): HHH, cultural failures per subdomain and type, efficiency, held-out.

A missing value (null in results.json) draws no bar and is labelled "n/a".
"""

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from data_pipeline import taxonomy  # noqa: E402
from eval.hhh.metrics import FAILURE_TYPES  # noqa: E402
from eval.report import benchmarks as report_benchmarks  # noqa: E402
from eval.report.reasoning import write_split_plot  # noqa: E402
from eval.report.tables import fmt, is_number, subdomain_label  # noqa: E402

PLOTS = ("hhh.png", "cultural_per_subdomain.png", "failure_types.png", "efficiency.png", "efficiency_split.png")
HELDOUT_PLOT = "heldout.png"


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
    fig.suptitle("Inference efficiency (decoding per model: report.md)" + stand_in, fontsize=10)
    fig.tight_layout()
    fig.savefig(out / PLOTS[3], dpi=120)
    plt.close(fig)
    write_split_plot(results, out / PLOTS[4])
    if HELDOUT_PLOT in plots_written(results):
        write_heldout_plot(results, out, stand_in)
    report_benchmarks.write_plot(results, out)  # only with a benchmarks block


def plots_written(results: dict) -> list[str]:
    return list(PLOTS) + ([HELDOUT_PLOT] if any(m.get("heldout") for m in results["metrics"].values()) else [])


def write_heldout_plot(results: dict, out: Path, stand_in: str) -> None:
    """Held-out NLL per token per model, and each baseline -> tuned change with its paired 95% CI."""
    names = list(results["metrics"])
    nll = [(results["metrics"][n].get("heldout") or {}).get("nll") for n in names]
    comps = [c for c in results["comparisons"] if "heldout_nll" in c["deltas"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    bars = left.bar(
        range(len(names)), [v if is_number(v) else 0.0 for v in nll], color=[f"C{i}" for i in range(len(names))]
    )
    left.bar_label(bars, labels=[fmt(v, 4) for v in nll], fontsize=8)
    left.set_xticks(range(len(names)), names, fontsize=8, rotation=15)
    left.set_title("held-out NLL per response token (nats) ↓", fontsize=9)
    finite = [v for v in nll if is_number(v)]
    if finite:
        spread = max(finite) - min(finite) or abs(max(finite)) * 0.01 or 1.0
        left.set_ylim(min(finite) - 2 * spread, max(finite) + 2 * spread)  # the differences are what matters
    deltas = [c["deltas"]["heldout_nll"] for c in comps]
    points = [d["delta"] if is_number(d["delta"]) else 0.0 for d in deltas]
    errors = [
        [p - d["ci_low"] if is_number(d["ci_low"]) else 0.0 for p, d in zip(points, deltas, strict=True)],
        [d["ci_high"] - p if is_number(d["ci_high"]) else 0.0 for p, d in zip(points, deltas, strict=True)],
    ]
    right.errorbar(range(len(comps)), points, yerr=errors, fmt="o", capsize=5)
    right.axhline(0, color="black", linewidth=0.6)
    right.set_xticks(range(len(comps)), [f"{c['baseline']} → {c['tuned']}" for c in comps], fontsize=8, rotation=10)
    right.set_title("Δ held-out NLL per token, paired 95% CI (below 0: training lowered it)", fontsize=9)
    fig.suptitle("Judge-free held-out metrics, CULTURAX test split" + stand_in, fontsize=10)
    fig.tight_layout()
    fig.savefig(out / HELDOUT_PLOT, dpi=120)
    plt.close(fig)
