"""results["side_by_side"]: the models' answers to the same prompts, and the report's table of them."""

from datasets import Dataset

from eval.hhh.samples import side_by_side
from eval.report.answers import cell, side_by_side_lines


def records(ids: list[str], model: str, samples: int = 2) -> list[dict]:
    return [{"id": i, "sample": k, "text": f"{model} answer {k} to {i}"} for i in ids for k in range(samples)]


def test_first_culturax_prompts_by_id_then_each_hhh_sets_first_with_each_models_first_sample():
    culturax_ids = ["t-07", "t-02", "t-10", "t-01", "t-05", "t-03", "t-09"]  # row order is not id order
    sets = {
        "culturax": Dataset.from_dict({"id": culturax_ids, "prompt": [f"Q{i}" for i in culturax_ids]}),
        "helpfulness": Dataset.from_dict({"id": ["h-9", "h-1"], "prompt": ["Help 9", "Help 1"]}),
        "harmlessness": Dataset.from_dict({"id": ["x-1"], "prompt": ["Harm 1"]}),
        "honesty": Dataset.from_dict({"id": [], "prompt": []}),
    }
    responses = {
        model: {name: records(list(ds["id"]), model) for name, ds in sets.items()} for model in ("base", "tuned")
    }
    rows = side_by_side(sets, responses)
    # sorted ids t-01, t-02, t-03, t-05, t-07 (not t-09, t-10); the HHH sets' first rows in row order; an empty set
    # has none.
    assert [(r["set"], r["prompt_id"]) for r in rows] == [
        ("culturax", "t-01"), ("culturax", "t-02"), ("culturax", "t-03"), ("culturax", "t-05"), ("culturax", "t-07"),
        ("helpfulness", "h-9"), ("harmlessness", "x-1"),
    ]  # fmt: skip
    assert rows[0] == {
        "set": "culturax",
        "prompt_id": "t-01",
        "prompt": "Qt-01",
        "answers": {"base": "base answer 0 to t-01", "tuned": "tuned answer 0 to t-01"},
    }


def test_report_table_cuts_answers_to_one_readable_line():
    long = "word " * 100
    assert cell("a | b\n\nc") == "a \\| b c"
    assert cell(long, 20) == "word word word word…" and len(cell(long, 20)) == 20
    results = {
        "side_by_side": [{"set": "culturax", "prompt_id": "t-1", "prompt": "Why?", "answers": {"a": "", "b": long}}]
    }
    lines = side_by_side_lines(results)
    assert lines[4] == "| Set | Prompt | a | b |"
    assert lines[6] == f"| culturax | Why? | (empty) | {cell(long)} |"
    assert side_by_side_lines({"side_by_side": []}) == []
