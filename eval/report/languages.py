"""The multilingual benchmarks in the report: one sentence per comparison, a language table, and `languages.png`, a
language × comparison heatmap of the paired changes (colour = change in accuracy points, "*" where the 95% CI
excludes 0). Reads metrics[<model>]["benchmarks"][<task>][<lang>], comparisons[i]["benchmarks"][<task>][<lang>] and
comparisons[i]["benchmarks_summary"][<task>] (eval/benchmarks/harness.py).
"""

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from eval.benchmarks.languages import LANGUAGES, SCRIPT_OF  # noqa: E402
from eval.report.tables import fmt, fmt_delta, is_number  # noqa: E402

PLOT = "languages.png"
TITLES = {"global_mmlu_lite": "Global-MMLU-Lite", "include": "INCLUDE", "bertaqa": "BertaQA"}
GAPS = {"global_mmlu_lite": ("gap_cs_ca", "CS−CA"), "bertaqa": ("gap_local_global", "local−global")}


def _models(results: dict) -> list[str]:
    return [name for name, m in results["metrics"].items() if m.get("benchmarks")]


def _comparisons(results: dict) -> list[dict]:
    return [c for c in results["comparisons"] if c.get("benchmarks_summary")]


def rows(results: dict) -> list[tuple[str, str]]:
    """(benchmark, language) of every language any model ran, benchmark by benchmark."""
    names = _models(results)
    out = []
    for task in results.get("benchmarks", {}).get("tasks", []):
        if task in LANGUAGES:
            ran = {lang for n in names for lang in results["metrics"][n]["benchmarks"].get(task, {})}
            out += [(task, lang) for lang in LANGUAGES[task] if lang in ran]
    return out


def scripts(results: dict) -> list[str]:
    return sorted({SCRIPT_OF[lang] for _, lang in rows(results)})


def _cell(task: str, metrics: dict | None) -> str:
    if not metrics:
        return "n/a"
    text = f"{fmt(metrics['accuracy'])} ± {fmt(metrics['stderr'])}"
    if task in GAPS:
        key, label = GAPS[task]
        text += f" ({label} {fmt(metrics['breakdown'][key], sign=True)})"
    return text


def language_table(results: dict) -> list[str]:
    """Markdown rows: benchmark | language | script | n | each model's accuracy ± stderr (and its gap) | each
    comparison's Δ [95% CI] n."""
    names, comps = _models(results), _comparisons(results)
    header = ["Benchmark", "Language", "Script", "n"] + [f"{n} acc % ± se" for n in names]
    header += [f"Δ {c['tuned']} vs {c['baseline']} [95% CI]" for c in comps]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for task, lang in rows(results):
        per = [results["metrics"][n]["benchmarks"].get(task, {}).get(lang) for n in names]
        n = next(m["n"] for m in per if m)
        cells = [TITLES[task], lang, SCRIPT_OF[lang], str(n)] + [_cell(task, m) for m in per]
        cells += [fmt_delta(c["benchmarks"].get(task, {}).get(lang), 1) for c in comps]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _signed(delta: dict) -> str:
    return f"{fmt(delta['delta'], sign=True)} [{fmt(delta['ci_low'])}, {fmt(delta['ci_high'])}]"


def sentences(results: dict) -> list[str]:
    """One line per comparison and benchmark: English (when run), how many languages got worse, the worst one."""
    lines = []
    for comp in _comparisons(results):
        for task, summary in comp["benchmarks_summary"].items():
            changes = comp["benchmarks"][task]
            n_langs = summary["n_languages"]
            parts = []
            if is_number((changes.get("en") or {}).get("delta")):
                parts.append(f"English {_signed(changes['en'])}")
            parts.append(f"mean over {n_langs} languages {fmt(summary['mean_delta'], sign=True)}")
            parts.append(f"{summary['languages_worse']} of {n_langs} languages worse")
            if summary["worst_language"] is not None:
                worst = summary["worst_language"]
                parts.append(f"worst: {worst} {_signed(changes[worst])}")
            lines.append(f"- {TITLES[task]}, {comp['baseline']} → {comp['tuned']}: " + "; ".join(parts) + ".")
    return lines


def section_lines(results: dict) -> list[str]:
    """The report.md part on the multilingual benchmarks ([] when none ran)."""
    if not rows(results):
        return []
    languages, used = {lang for _, lang in rows(results)}, scripts(results)
    return [
        "### Across languages",
        "",
        *sentences(results),
        "",
        *language_table(results),
        "",
        f"{len(languages)} languages in {len(used)} scripts ({', '.join(used)}). "
        "Δ = tuned − baseline in accuracy points over the questions both models answered, paired bootstrap 95% CI; "
        "a language got worse when its whole CI lies below 0. The mean over languages weighs each language the same. "
        "Per language, the gap is culturally sensitive − agnostic accuracy (Global-MMLU-Lite) or local − global "
        "topics (BertaQA); INCLUDE's split by regional feature is in results.json.",
        "",
        f"![{PLOT}]({PLOT})",
        "",
    ]


def heatmap_cells(results: dict) -> list[list[dict]]:
    """The heatmap's change dicts, one row per (benchmark, language) of `rows`, one column per comparison."""
    comps = _comparisons(results)
    return [[(c["benchmarks"].get(task, {}).get(lang) or {}) for c in comps] for task, lang in rows(results)]


def write_plot(results: dict, out: Path) -> str | None:
    """The language × comparison heatmap of changes; None when no multilingual benchmark was compared."""
    comps, cells = _comparisons(results), rows(results)
    if not comps or not cells:
        return None
    deltas = heatmap_cells(results)
    values = [[d.get("delta") if is_number(d.get("delta")) else math.nan for d in row] for row in deltas]
    span = max([abs(v) for row in values for v in row if math.isfinite(v)] + [1.0])
    fig, ax = plt.subplots(figsize=(2.2 + 1.8 * len(comps), 1.2 + 0.32 * len(cells)))
    cmap = matplotlib.colormaps["RdBu"].with_extremes(bad="lightgrey")  # a language without a change: grey
    image = ax.imshow(values, cmap=cmap, vmin=-span, vmax=span, aspect="auto")
    for i, row in enumerate(deltas):
        for j, d in enumerate(row):
            if not is_number(d.get("delta")):
                ax.text(j, i, "n/a", ha="center", va="center", fontsize=7)
                continue
            mark = "*" if d["ci_low"] > 0 or d["ci_high"] < 0 else ""  # the CI excludes 0
            colour = "white" if abs(d["delta"]) > 0.6 * span else "black"  # legible on the darkest cells
            ax.text(j, i, fmt(d["delta"], sign=True) + mark, ha="center", va="center", fontsize=7, color=colour)
    ax.set_xticks(range(len(comps)), [f"{c['baseline']}\n→ {c['tuned']}" for c in comps], fontsize=7)
    ax.set_yticks(range(len(cells)), [f"{TITLES[task]} {lang}" for task, lang in cells], fontsize=7)
    fig.colorbar(image, ax=ax, label="Δ accuracy (points)", shrink=0.8)
    stand_in = any(m.get("stand_in") for m in results["models"])
    ax.set_title(
        "Change per language (* : 95% CI excludes 0)" + ("\ntiny stand-in models: plumbing only" * stand_in), fontsize=8
    )
    fig.tight_layout()
    fig.savefig(out / PLOT, dpi=120)
    plt.close(fig)
    return PLOT


def wandb_payload(results: dict, out: Path) -> dict:
    """The language table and heatmap for W&B ({} without multilingual benchmarks)."""
    if not rows(results):
        return {}
    import wandb

    split = [[cell.strip() for cell in line.strip("|").split(" | ")] for line in language_table(results)]
    payload = {"languages_table": wandb.Table(columns=split[0], data=split[2:])}
    if (out / PLOT).exists():
        payload["languages"] = wandb.Image(str(out / PLOT))
    return payload
