"""The report's sections for the AlignCultura paper's protocol, read from results.json only (no model, no judge):
the table in the paper's layout with the protocol above it, each run's score (run-to-run spread), the moderator's
rate per harm category. Definitions: eval/hhh/paper.py and eval/hhh/moderation.py.
"""

from eval.report.tables import fmt

PAPER_COLUMNS = [  # (metrics key, the paper's column)
    ("win_rate_discrete", "WR ↑"),  # the paper's WR = N_wins / N: the discrete verdicts, ties half
    ("safety_score", "SS ↓"),
    ("truth_info_paper", "TI ↑"),
    ("joint_hhh_paper", "Avg ↑"),
]
SPREAD_METRICS = [
    ("win_rate", "Win rate %"),
    ("safety_score", "Safety score %"),
    ("truth_info", "Truth×Info %"),
    ("truth_info_paper", "Truth×Info (paper) %"),
    ("joint_hhh", "Joint HHH"),
    ("joint_hhh_paper", "Avg (paper)"),
    ("cultural_failure_rate", "Cultural failures %"),
]


def protocol_line(protocol: dict | None) -> str:
    """One line naming what produced a run's numbers."""
    if not protocol:
        return "Protocol: not recorded (results written before the protocol was)."
    samples = protocol["samples"]
    samples_text = f"{samples} per prompt" if isinstance(samples, int) else f"{samples} per prompt (models differ)"
    moderator = protocol["moderator"] or "none (safety judged by the judge)"
    return (
        f"Protocol: judge {protocol['judge']}; moderator {moderator}; decoding {protocol['decoding']}; "
        f"samples {samples_text}."
    )


def paper_table(results: dict) -> list[str]:
    """The paper's layout: one row per model, WR, SS, TI and Avg under the paper's definitions."""
    lines = ["| Model | " + " | ".join(header for _, header in PAPER_COLUMNS) + " |"]
    lines.append("|" + "---|" * (len(PAPER_COLUMNS) + 1))
    for name, m in results["metrics"].items():
        lines.append(f"| {name} | " + " | ".join(fmt(m.get(key)) for key, _ in PAPER_COLUMNS) + " |")
    return lines


def section_lines(results: dict) -> list[str]:
    """The paper's table with its protocol and definitions, then the run spread and harm categories if any."""
    lines = ["## The paper's table (AlignCultura's layout)", "", protocol_line(results.get("protocol")), ""]
    lines += paper_table(results) + [""]
    lines += [
        "WR: win rate (pairwise verdicts against the reference, ties half). SS: safety score, % of answers to harmful "
        "prompts flagged unsafe (by the moderator when there is one). TI = (N_truthful / N) × (N_informative / N) × "
        "100, the product of the two shares (the paper's definition; `truth_info` beside it is TruthfulQA's share of "
        "answers both truthful and informative). Avg = (WR + TI − SS) / 3. Source: gskgautam/AlignCultura README "
        "(commits 37f6ace, c0eabbd), `eval/hhh/paper.py`.",
        "",
    ]
    return lines + spread_lines(results) + harm_category_lines(results)


def spread_lines(results: dict) -> list[str]:
    """Each run's score (run j = sample j of every prompt) and their min–max, when a model has several runs."""
    runs = {name: m["runs"] for name, m in results["metrics"].items() if m.get("runs")}
    k = max((len(r["win_rate"]["per_run"]) for r in runs.values()), default=1)
    if k < 2:
        return []
    lines = ["## Run-to-run spread (run j: sample j of every prompt)", ""]
    lines += ["| Model | Metric | " + " | ".join(f"run {j + 1}" for j in range(k)) + " | min–max |"]
    lines.append("|" + "---|" * (k + 3))
    for name, metrics in runs.items():
        for key, label in SPREAD_METRICS:
            if key not in metrics:
                continue
            spread = metrics[key]
            cells = [fmt(v) for v in spread["per_run"]] + ["" for _ in range(k - len(spread["per_run"]))]
            lines.append(
                f"| {name} | {label} | " + " | ".join(cells) + f" | {fmt(spread['min'])}–{fmt(spread['max'])} |"
            )
    lines += ["", "The headline averages a prompt's samples first; for linear metrics that is the runs' mean.", ""]
    return lines


def harm_category_lines(results: dict) -> list[str]:
    """% of judged harmful-prompt responses the moderator flags per harm category, per model."""
    names = [name for name, m in results["metrics"].items() if m.get("harm_categories")]
    if not names:
        return []
    moderator = results["judges"]["safety"]
    lines = [
        f"## Harm categories ({moderator['judge']}, threshold {moderator.get('threshold')}; % of judged responses)",
        "",
        "| Category | " + " | ".join(names) + " |",
        "|" + "---|" * (len(names) + 1),
    ]
    for category in results["metrics"][names[0]]["harm_categories"]:
        cells = [fmt(results["metrics"][n]["harm_categories"].get(category)) for n in names]
        lines.append(f"| {category} | " + " | ".join(cells) + " |")
    return lines + [""]
