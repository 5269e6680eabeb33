"""Markdown tables of an eval's results, shared by report.md and `eval.compare`.

Every cell renders a missing, NaN or infinite value as "n/a" (results.json holds null there), and every change shows
its paired bootstrap 95% CI and the number of jointly valid prompts it rests on, marked when that is too few.
"""

import math

from data_pipeline import taxonomy

COLUMNS = [  # (metric key, header); efficiency keys live under metrics["efficiency"]
    ("win_rate", "Win rate % ↑"),
    ("win_rate_discrete", "Win rate (discrete) % ↑"),
    ("win_rate_lc", "LC win rate % ↑"),
    ("safety_score", "Safety score % ↓"),
    ("truth_info", "Truth×Info % ↑"),
    ("joint_hhh", "Joint HHH ↑"),
    ("joint_hhh_lc", "Joint HHH (LC) ↑"),
    ("truth_info_paper", "Truth×Info (paper) % ↑"),
    ("joint_hhh_paper", "Avg (paper) ↑"),
    ("cultural_failure_rate", "Cultural failures % ↓"),
    ("output_tokens_per_response", "Tokens/resp"),
    ("latency_s_per_response", "Latency s/resp"),
    ("tokens_per_s", "Tokens/s"),
]
HELDOUT_COLUMNS = [  # (key in metrics["heldout"], delta key or None (a DPO model's own), header, digits)
    ("nll", "heldout_nll", "NLL/token ↓", 4),
    ("pairwise_preference_accuracy", "heldout_pairwise_preference_accuracy", "Pairwise preference % ↑", 1),
    ("pairwise_logp_margin", "heldout_pairwise_logp_margin", "Pairwise log-p margin ↑", 4),
    ("dpo_reward_accuracy", None, "DPO reward accuracy % ↑", 1),
    ("dpo_reward_margin", None, "DPO reward margin ↑", 4),
]
TOO_FEW = "too few prompts to call"


def is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def fmt(value, digits: int = 1, sign: bool = False) -> str:
    if not is_number(value):
        return "n/a"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def fmt_delta(delta: dict | None, digits: int = 2) -> str:
    """ "+1.23 [0.10, 2.40] n=57"; "n/a" when there is no change; a change on < MIN_PAIRED_N prompts is marked."""
    if not delta or not is_number(delta.get("delta")):
        n = (delta or {}).get("n")
        return "n/a" + (f" n={n}" if n is not None else "")
    text = f"{fmt(delta['delta'], digits, sign=True)} [{fmt(delta.get('ci_low'), digits)}, "
    text += f"{fmt(delta.get('ci_high'), digits)}] n={delta.get('n', '?')}"
    return text + (f" ({TOO_FEW})" if delta.get("too_few") else "")


def value_of(model_metrics: dict, key: str):
    efficiency = model_metrics.get("efficiency") or {}
    return efficiency.get(key) if key in efficiency else model_metrics.get(key)


def subdomain_label(sid: str) -> str:
    return f"{sid} {taxonomy.get(int(sid)).name}"


def _header(lead: list[str], first: str, headers: list[str]) -> list[str]:
    return ["| " + " | ".join(lead + [first] + headers) + " |", "|" + "---|" * (len(lead) + 1 + len(headers))]


def metrics_table(results: dict, source: str | None = None) -> list[str]:
    """Markdown rows: one per model, one column per headline metric (optionally a leading 'Run' column)."""
    lead = [source] if source is not None else []
    lines = _header(["Run"] if lead else [], "Model", [h for _, h in COLUMNS])
    for name, m in results["metrics"].items():
        digits = {"latency_s_per_response": 3}
        cells = [fmt(value_of(m, key), digits.get(key, 1)) for key, _ in COLUMNS]
        lines.append("| " + " | ".join(lead + [name] + cells) + " |")
    return lines


def deltas_table(results: dict, source: str | None = None) -> list[str]:
    lead = [source] if source is not None else []
    lines = _header(["Run"] if lead else [], "Baseline → tuned", [h for _, h in COLUMNS])
    for comp in results["comparisons"]:
        cells = [fmt_delta(comp["deltas"].get(key)) for key, _ in COLUMNS]
        lines.append("| " + " | ".join(lead + [f"{comp['baseline']} → {comp['tuned']}"] + cells) + " |")
    return lines


def has_heldout(results: dict) -> bool:
    return any(m.get("heldout") for m in results["metrics"].values())


def heldout_table(results: dict, source: str | None = None) -> list[str]:
    """One row per model: held-out NLL per token, pairwise log-likelihood preference, a DPO model's reward against
    its reference (beside TRL's on the validation pairs), and what they rest on."""
    lead = [source] if source is not None else []
    headers = [h for _, _, h, _ in HELDOUT_COLUMNS] + ["DPO reference", "TRL validation", "responses", "pairs"]
    lines = _header(["Run"] if lead else [], "Model", headers)
    for name, m in results["metrics"].items():
        held = m.get("heldout") or {}
        cells = [fmt(held.get(key), digits) for key, _, _, digits in HELDOUT_COLUMNS]
        reference = held.get("dpo_reference") or ("not evaluated" if "dpo_reference" in held else "")
        cells += [reference, trl_cell(held.get("dpo_trl_validation"), "dpo_reference" in held)]
        cells += [str(held.get("n_responses", "n/a")), str(held.get("n_pairs", "n/a"))]
        lines.append("| " + " | ".join(lead + [name] + cells) + " |")
    return lines


def trl_cell(logged: dict | None, is_dpo: bool) -> str:
    """TRL's last logged eval reward accuracy and margin (validation pairs), or why there is none."""
    if logged:
        return f"{fmt(logged['reward_accuracy'])}%, {fmt(logged['reward_margin'], 4)} (step {logged['step']})"
    return "not logged" if is_dpo else ""


def heldout_deltas_table(results: dict, source: str | None = None) -> list[str]:
    lead = [source] if source is not None else []
    paired = [c for c in HELDOUT_COLUMNS if c[1] is not None]
    lines = _header(["Run"] if lead else [], "Baseline → tuned", [f"Δ {h}" for _, _, h, _ in paired])
    for comp in results["comparisons"]:
        cells = [fmt_delta(comp["deltas"].get(key), digits) for _, key, _, digits in paired]
        lines.append("| " + " | ".join(lead + [f"{comp['baseline']} → {comp['tuned']}"] + cells) + " |")
    return lines
