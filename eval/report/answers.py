"""The models' answers to the same prompts side by side (results.json "side_by_side"), cut to a readable length;
the full texts are in samples/<model>.jsonl."""

CELL_CHARS = 220  # per answer in the table


def cell(text: str, limit: int = CELL_CHARS) -> str:
    """One table cell: a single line, pipes escaped, cut at ``limit`` characters with an ellipsis."""
    flat = " ".join(text.split()).replace("|", "\\|")
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def side_by_side_lines(results: dict) -> list[str]:
    rows = results.get("side_by_side") or []
    if not rows:
        return []
    models = list(rows[0]["answers"])
    lines = [
        "## Answers side by side",
        "",
        f"The first CULTURAX test prompts by id, then the first prompt of each HHH set; each model's first answer "
        f"(reasoning stripped), cut at {CELL_CHARS} characters. Full texts: samples/<model>.jsonl.",
        "",
        "| Set | Prompt | " + " | ".join(models) + " |",
        "|" + "---|" * (len(models) + 2),
    ]
    for row in rows:
        answers = " | ".join(cell(row["answers"][model]) or "(empty)" for model in models)
        lines.append(f"| {row['set']} | {cell(row['prompt'], 160)} | {answers} |")
    return lines + [""]
