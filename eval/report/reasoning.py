"""report.md sections on decoding and reasoning: per-model decoding (and whether base and tuned share it), the
efficiency split (thinking vs answer tokens), no final answer per test set, and a plain statement of what tuning did
to reasoning and, alongside, to the other metrics. Reads the cleaned results dict (NaN already None)."""

from eval.report.tables import fmt, fmt_delta

EFFICIENCY_SPLIT_HEADER = (
    "| Model | think tok mean | think tok median | answer tok mean | answer tok median | total tok mean | "
    "total tok median | latency s/resp | thinking share % | no final answer % |"
)
SPLIT_DELTAS = (
    ("thinking_tokens_per_response", "Δ think tok"),
    ("answer_tokens_per_response", "Δ answer tok"),
    ("output_tokens_per_response", "Δ total tok"),
    ("latency_s_per_response", "Δ latency s"),
    ("thinking_share", "Δ thinking share pp"),
    ("no_final_answer_rate", "Δ no final answer pp"),
)
ALONGSIDE = (  # the other metrics a reader needs next to a change in reasoning
    ("win_rate", "win rate"),
    ("truth_info", "Truth×Info"),
    ("safety_score", "safety score"),
    ("cultural_failure_rate", "cultural failure rate"),
    ("joint_hhh", "joint HHH"),
)


def decoding_section(results: dict) -> list[str]:
    lines = [
        "## Decoding per model",
        "",
        "Each model decodes with its own settings, else its family preset (`eval/decoding.py`), else the run default.",
        "",
        "| Model | preset | temperature | top-p | top-k | max new tokens | system prompt | samples/prompt | "
        "chat template kwargs | think block opened by the prompt |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model in results["models"]:
        d = model["decoding"]
        lines.append(
            f"| {model['name']} | {d['preset'] or '-'} | {d['temperature']} | {d['top_p']} | {d['top_k'] or 'off'} | "
            f"{d['max_new_tokens']} | "
            f"{'none' if not d['system_prompt'] else repr(d['system_prompt'])} | {d['samples_per_prompt']} | "
            f"{d['chat_template_kwargs'] or '-'} | {'yes' if model['prompt_opens_think'] else 'no'} |"
        )
    lines.append("")
    for comp in results["comparisons"]:
        pair = f"{comp['baseline']} → {comp['tuned']}"
        if comp["decoding_shared"]:
            lines.append(f"- {pair}: identical decoding (checked), so the changes below come from the weights.")
        else:
            fields = ", ".join(comp["decoding_differences"])
            lines.append(
                f"- **{pair}: decoding differs ({fields}); the changes below mix weights and decoding.** "
                "Base and tuned versions of one model should share settings."
            )
    return lines + [""]


def efficiency_split_table(results: dict) -> list[str]:
    lines = [EFFICIENCY_SPLIT_HEADER, "|" + "---|" * 10]
    for name, m in results["metrics"].items():
        eff = m["efficiency"]
        cells = [
            fmt(eff["thinking_tokens_per_response"]),
            fmt(eff["thinking_tokens_median"]),
            fmt(eff["answer_tokens_per_response"]),
            fmt(eff["answer_tokens_median"]),
            fmt(eff["output_tokens_per_response"]),
            fmt(eff["output_tokens_median"]),
            fmt(eff["latency_s_per_response"], 3),
            fmt(eff["thinking_share"]),
            fmt(m["no_final_answer_rate"]["overall"]),
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def split_deltas_table(results: dict) -> list[str]:
    lines = ["| Baseline → tuned | " + " | ".join(h for _, h in SPLIT_DELTAS) + " |"]
    lines.append("|" + "---|" * (len(SPLIT_DELTAS) + 1))
    for comp in results["comparisons"]:
        cells = [fmt_delta(comp["deltas"].get(key)) for key, _ in SPLIT_DELTAS]
        lines.append(f"| {comp['baseline']} → {comp['tuned']} | " + " | ".join(cells) + " |")
    return lines


def no_answer_table(results: dict) -> list[str]:
    sets = list(results["test_sets"])
    lines = ["| Model | " + " | ".join(sets) + " | overall |", "|" + "---|" * (len(sets) + 2)]
    for name, m in results["metrics"].items():
        rates = m["no_final_answer_rate"]
        lines.append(f"| {name} | " + " | ".join(fmt(rates.get(s)) for s in sets + ["overall"]) + " |")
    return lines


def reasoning_statement(results: dict, comp: dict) -> str:
    """One plain sentence per comparison: did tuning remove (or add) reasoning, and what moved with it."""
    base, tuned = results["metrics"][comp["baseline"]], results["metrics"][comp["tuned"]]
    share = comp["deltas"]["thinking_share"]
    before, after = base["efficiency"]["thinking_share"], tuned["efficiency"]["thinking_share"]
    pair = f"{comp['baseline']} → {comp['tuned']}"
    if share["delta"] is None or before is None or after is None:
        return f"- {pair}: thinking share not measurable (no responses)."
    moved = f"from {fmt(before)}% to {fmt(after)}% of responses ({fmt_delta(share)} pp)"
    if share["delta"] < 0 and share["ci_high"] is not None and share["ci_high"] < 0:
        verdict = "**Tuning removed reasoning entirely**" if after == 0 else "**Tuning removed reasoning**"
        verdict += f": the share of responses with a non-empty think block fell {moved}."
    elif share["delta"] < 0:
        verdict = f"The share of responses that reason fell {moved}, within noise (the CI includes 0)."
    elif share["delta"] > 0:
        verdict = f"The share of responses that reason rose {moved}."
    else:
        verdict = f"Reasoning unchanged: {fmt(after)}% of responses reason in both."
    alongside = "; ".join(f"{label} {fmt_delta(comp['deltas'].get(key))}" for key, label in ALONGSIDE)
    tokens = comp["deltas"]["thinking_tokens_per_response"], comp["deltas"]["answer_tokens_per_response"]
    return (
        f"- {pair}: {verdict} Thinking tokens/response {fmt_delta(tokens[0])}, answer tokens/response "
        f"{fmt_delta(tokens[1])}. Alongside: {alongside}."
    )


def reasoning_sections(results: dict) -> list[str]:
    """Everything this module adds to report.md, in order."""
    lines = decoding_section(results)
    lines += ["## Efficiency split: thinking vs answer tokens", ""] + efficiency_split_table(results) + [""]
    lines += [
        "Tokens per response over every sampled response; thinking = tokens of the think block (all tokens of a "
        "response whose block never closed), answer = the rest. Thinking share = % of responses with a non-empty "
        "think block. No final answer = % of responses whose think block never closed: never judged, scored as a "
        "loss / not truthful-informative / `no_answer` cultural failure (`eval/hhh/metrics.py`).",
        "",
    ]
    if results["comparisons"]:
        lines += ["Changes baseline → tuned (paired bootstrap 95% CI over prompts):", ""]
        lines += split_deltas_table(results) + [""]
        lines += [reasoning_statement(results, comp) for comp in results["comparisons"]] + [""]
    lines += ["## No final answer per test set (%)", ""] + no_answer_table(results) + [""]
    return lines


def write_split_plot(results: dict, path) -> None:
    """Stacked thinking/answer tokens per response, and the shares that reason / give no final answer, per model."""
    import matplotlib.pyplot as plt

    names, per_model = list(results["metrics"]), results["metrics"]

    def values(key: str) -> list[float]:
        return [per_model[n]["efficiency"][key] or 0.0 for n in names]

    thinking, answer = values("thinking_tokens_per_response"), values("answer_tokens_per_response")
    fig, (tokens_ax, share_ax) = plt.subplots(1, 2, figsize=(11, 4))
    positions = range(len(names))
    tokens_ax.bar(positions, thinking, label="thinking", color="C1")
    tokens_ax.bar(positions, answer, bottom=thinking, label="answer", color="C0")
    tokens_ax.set_title("tokens per response (mean)", fontsize=9)
    tokens_ax.legend(fontsize=8)
    share = values("thinking_share")
    no_answer = [per_model[n]["no_final_answer_rate"]["overall"] or 0.0 for n in names]
    width = 0.4
    share_ax.bar([p - width / 2 for p in positions], share, width, label="responses with thinking", color="C1")
    share_ax.bar([p + width / 2 for p in positions], no_answer, width, label="no final answer", color="C3")
    share_ax.set_ylim(0, 110)
    share_ax.set_ylabel("%")
    share_ax.legend(fontsize=8)
    for ax in (tokens_ax, share_ax):
        ax.set_xticks(list(positions), names, fontsize=8, rotation=15)
    fig.suptitle("Reasoning vs answer", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
