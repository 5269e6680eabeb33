"""The benchmarks' part of the report: one table (accuracy ± stderr per model, paired changes with 95% CI), one plot
(per benchmark, every model with its 95% CI; Global-MMLU-Lite English culturally sensitive and agnostic side by side),
the multilingual benchmarks across languages (eval/report/languages.py: sentences, table, languages.png), and the same
to W&B. Reads results.json's metrics[<model>]["benchmarks"] and comparisons[i]["benchmarks"] (eval/benchmarks/).
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from eval.benchmarks.languages import LANGUAGES  # noqa: E402
from eval.report import languages as report_languages  # noqa: E402
from eval.report.tables import fmt, fmt_delta, is_number  # noqa: E402

PLOT = "benchmarks.png"
TITLES = {
    "culturalbench_easy": "CulturalBench-Easy",
    "culturalbench_hard": "CulturalBench-Hard (questions)",
    "blend_mcq": "BLEnD MCQ",
    "normad": "NormAd (country context)",
    "global_mmlu_lite_en": "Global-MMLU-Lite en",
}
SUBROWS = {  # (task, breakdown key, title): rows under a task's main row
    "culturalbench_hard": [("judgement_accuracy", "  judgements")],
    "global_mmlu_lite_en": [
        ("culturally_sensitive", "  culturally sensitive"),
        ("culturally_agnostic", "  culturally agnostic"),
        ("gap_cs_ca", "  gap CS − CA (pp)"),
    ],
}


def _models(results: dict) -> list[str]:
    return [name for name, m in results["metrics"].items() if m.get("benchmarks")]


def _tasks(results: dict) -> list[str]:
    """The single-language rows: every single-language task, and Global-MMLU-Lite's English alias when English ran
    (the multilingual benchmarks are in the language table)."""
    names = _models(results)
    tasks = [t for t in results.get("benchmarks", {}).get("tasks", []) if t not in LANGUAGES]
    alias = "global_mmlu_lite_en"
    return tasks + [alias] * any(alias in results["metrics"][n]["benchmarks"] for n in names)


def benchmark_table(results: dict) -> list[str]:
    """Markdown rows: benchmark | n | each model's accuracy ± stderr | each comparison's Δ [95% CI]."""
    names, comps = _models(results), [c for c in results["comparisons"] if "benchmarks" in c]
    header = ["Benchmark", "n"] + [f"{n} acc % ± se" for n in names] + [f"Δ {c['tuned']} [95% CI]" for c in comps]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for task in _tasks(results):
        per = [results["metrics"][n]["benchmarks"].get(task) for n in names]
        if not any(per):
            continue
        cells = [f"{fmt(m['accuracy'])} ± {fmt(m['stderr'])}" if m else "n/a" for m in per]
        deltas = [fmt_delta(c["benchmarks"].get(task)) for c in comps]
        n = next(m["n"] for m in per if m)
        lines.append(f"| {TITLES[task]} | {n} | " + " | ".join(cells + deltas) + " |")
        for key, title in SUBROWS.get(task, []):
            cells, n = [], ""
            for m in per:
                value = m["breakdown"].get(key) if m else None
                if isinstance(value, dict):
                    cells.append(f"{fmt(value['accuracy'])} ± {fmt(value['stderr'])}")
                    n = value["n"]
                else:
                    cells.append(fmt(value))
                    n = m["breakdown"].get("judgement_n", "") if key == "judgement_accuracy" and m else n
            deltas = [fmt_delta(c["benchmarks"].get(task, {}).get("breakdown", {}).get(key)) for c in comps]
            lines.append(f"| {title} | {n} | " + " | ".join(cells + deltas) + " |")
    return lines


def _limit(limit) -> str:
    if limit is None:
        return "every question"
    return f"limit={limit} questions per task and language (a seeded sample stratified by label and country)"


def section_lines(results: dict) -> list[str]:
    """The report.md section ([] when the run had no benchmarks block)."""
    if not _models(results) or not results.get("benchmarks", {}).get("tasks"):
        return []
    meta = results["benchmarks"]
    sources = "; ".join(
        f"{t}: {s['local'] if isinstance(s['local'], str) else 'local copies'}"
        if "local" in s
        else f"{t}: {s['dataset']}@{(s['revision'] or 'main')[:7]}"
        for t, s in meta["sources"].items()
    )
    return [
        "## Cultural benchmarks (lm-evaluation-harness, log-likelihood multiple choice)",
        "",
        *(benchmark_table(results) if _tasks(results) else []),
        "",
        f"Accuracy in % over questions (CulturalBench-Hard: a question counts when all its judgements are right); "
        f"Δ = tuned − baseline over the questions both models answered, paired bootstrap 95% CI. "
        f"lm-eval {meta['lm_eval_version']}, {_limit(meta['limit'])}, num_fewshot={meta['num_fewshot']}, "
        f"chat template={meta['apply_chat_template']}. "
        f"Data: {sources} (local files and hub configs: results.json). Per-country and per-label breakdowns: "
        "results.json; per-question outcomes: samples/.",
        "",
        *([f"![{PLOT}]({PLOT})", ""] if _tasks(results) else []),
        *report_languages.section_lines(results),
    ]


def write_plot(results: dict, out: Path) -> str | None:
    """Grouped bars: one group per benchmark (Global-MMLU-Lite CS and CA as two groups), a bar per model, 95% CI."""
    names = _models(results)
    report_languages.write_plot(results, out)
    if not names or not _tasks(results):
        return None
    groups = []  # (label, [(accuracy, stderr) per model])
    for task in _tasks(results):
        per = [results["metrics"][n]["benchmarks"].get(task) for n in names]
        if task == "global_mmlu_lite_en":  # English, culturally sensitive and agnostic apart
            for key, label in (("culturally_sensitive", "G-MMLU-Lite CS"), ("culturally_agnostic", "G-MMLU-Lite CA")):
                groups.append((label, [(m["breakdown"][key]["accuracy"], m["breakdown"][key]["stderr"]) for m in per]))
        else:
            groups.append((TITLES[task].split(" (")[0], [(m["accuracy"], m["stderr"]) for m in per]))
    stand_in = any(m["stand_in"] for m in results["models"])
    fig, ax = plt.subplots(figsize=(max(7, 1.6 * len(groups)), 4.5))
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        xs = [i + (k - (len(names) - 1) / 2) * width for i in range(len(groups))]
        accs = [g[1][k][0] for g in groups]
        heights = [a if is_number(a) else 0.0 for a in accs]  # results.json holds null for a value that does not exist
        half = [1.96 * g[1][k][1] if is_number(g[1][k][1]) else 0.0 for g in groups]  # normal 95% CI of a mean
        errs = [
            [min(e, h) for e, h in zip(half, heights, strict=True)],
            [min(e, 100 - h) for e, h in zip(half, heights, strict=True)],
        ]
        bars = ax.bar(xs, heights, width, yerr=errs, capsize=3, label=name)  # a share's CI stays inside [0, 100]
        ax.bar_label(bars, labels=[fmt(a) for a in accs], fontsize=7, padding=2)
    ax.set_xticks(range(len(groups)), [g[0] for g in groups], fontsize=8, rotation=15)
    ax.set_ylim(0, 110)
    ax.set_ylabel("accuracy % (95% CI)")
    ax.set_title("Cultural benchmarks: baseline vs tuned" + (" (tiny stand-in models: plumbing only)" * stand_in))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / PLOT, dpi=120)
    plt.close(fig)
    return PLOT


def _flat(per_task: dict, field: str):
    """(task, value) and, for a multilingual task, (task/language, value) pairs of a benchmarks mapping."""
    for task, value in per_task.items():
        if field in value:
            yield task, value
        else:
            yield from ((f"{task}/{lang}", per_lang) for lang, per_lang in value.items())


def wandb_payload(results: dict, out: Path) -> dict:
    """The benchmark table and plot for W&B ({} without benchmarks)."""
    if not _models(results):
        return {}
    import wandb

    rows = [[cell.strip() for cell in line.strip("|").split(" | ")] for line in benchmark_table(results)]
    payload = {"benchmarks_table": wandb.Table(columns=rows[0], data=rows[2:])}
    for name in _models(results):  # scalars land in the run summary too
        for key, m in _flat(results["metrics"][name]["benchmarks"], "accuracy"):
            payload[f"{name}/benchmarks/{key}/accuracy"] = m["accuracy"]
    for comp in results["comparisons"]:
        for key, delta in _flat(comp.get("benchmarks", {}), "delta"):
            payload[f"{comp['tuned']}_vs_{comp['baseline']}/benchmarks/{key}/delta"] = delta["delta"]
    if (out / PLOT).exists():
        payload["benchmarks"] = wandb.Image(str(out / PLOT))
    return payload | report_languages.wandb_payload(results, out)
