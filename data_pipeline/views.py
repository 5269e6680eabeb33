"""Ready-to-train views of the judged dataset for TRL 1.x, in its conversational formats, with no further mapping.

- SFT (language modeling): "messages" = [user prompt, assistant chosen] + "id", "subdomains".
- DPO (preference, explicit prompt): "prompt" = [user], "chosen" = [assistant], "rejected" = [assistant]
  + "id", "subdomains", "score_chosen", "score_rejected"; only rows with a preference pair.

When the judged rows carry "candidate_reasoning" (generate.keep_reasoning with a reasoning generator), the views add
the generator's reasoning for the texts they hold: SFT "reasoning", DPO "chosen_reasoning" / "rejected_reasoning".
The messages keep the answers only; train/data.py puts the reasoning back into the think block when a recipe sets
``keep_reasoning`` ("reason, then answer" tuning).
"""

from datasets import Dataset, DatasetDict, Features, List, Value

NEEDED_COLUMNS = ("id", "prompt", "subdomains", "chosen", "rejected", "score_chosen", "score_rejected")
MESSAGE = {"role": Value("string"), "content": Value("string")}
SFT_FEATURES = Features({"messages": List(MESSAGE), "id": Value("string"), "subdomains": List(Value("int32"))})
DPO_FEATURES = Features(
    {
        "prompt": List(MESSAGE),
        "chosen": List(MESSAGE),
        "rejected": List(MESSAGE),
        "id": Value("string"),
        "subdomains": List(Value("int32")),
        "score_chosen": Value("float64"),
        "score_rejected": Value("float64"),
    }
)


def _check_columns(ds: Dataset, split: str) -> None:
    missing = [column for column in NEEDED_COLUMNS if column not in ds.column_names]
    if missing:
        raise ValueError(f"split '{split}': missing column(s) {missing}; views need judge.rejection_sample output")


def _dataset(rows: list[dict], features: Features) -> Dataset:
    # from_dict, not from_list: from_list cannot build a zero-row dataset (a split without pairs) with given features.
    return Dataset.from_dict({name: [row[name] for row in rows] for name in features}, features=features)


def _has_pair(row: dict) -> bool:
    # Older judged data may lack the flag; a non-empty rejected text with a score is then the pair.
    if "has_preference_pair" in row:
        return bool(row["has_preference_pair"])
    return bool(row["rejected"]) and row["score_rejected"] is not None


def _reasoning_of(row: dict, text: str) -> str:
    """The generator's reasoning for the candidate whose answer is ``text`` ("" for none)."""
    if not text:
        return ""
    return row["candidate_reasoning"][row["candidates"].index(text)]


def _with_reasoning(features: Features, names: tuple[str, ...], ds: Dataset) -> Features:
    if "candidate_reasoning" not in ds.column_names:
        return features
    return Features({**features, **{name: Value("string") for name in names}})


def sft_view(ds: Dataset) -> Dataset:
    features = _with_reasoning(SFT_FEATURES, ("reasoning",), ds)
    rows = [
        {
            "messages": [{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row["chosen"]}],
            "id": row["id"],
            "subdomains": row["subdomains"],
            **({"reasoning": _reasoning_of(row, row["chosen"])} if "reasoning" in features else {}),
        }
        for row in ds
    ]
    return _dataset(rows, features)


def dpo_view(ds: Dataset) -> Dataset:
    features = _with_reasoning(DPO_FEATURES, ("chosen_reasoning", "rejected_reasoning"), ds)
    reasoning = "chosen_reasoning" in features
    rows = [
        {
            "prompt": [{"role": "user", "content": row["prompt"]}],
            "chosen": [{"role": "assistant", "content": row["chosen"]}],
            "rejected": [{"role": "assistant", "content": row["rejected"]}],
            "id": row["id"],
            "subdomains": row["subdomains"],
            "score_chosen": row["score_chosen"],
            "score_rejected": row["score_rejected"],
            **(
                {
                    "chosen_reasoning": _reasoning_of(row, row["chosen"]),
                    "rejected_reasoning": _reasoning_of(row, row["rejected"]),
                }
                if reasoning
                else {}
            ),
        }
        for row in ds
        if _has_pair(row)
    ]
    return _dataset(rows, features)


def build_views(dsd: DatasetDict) -> dict[str, DatasetDict]:
    """{"sft": DatasetDict, "dpo": DatasetDict} with the same splits as `dsd` (the judged rows)."""
    for split, ds in dsd.items():
        _check_columns(ds, split)
    return {
        "sft": DatasetDict({split: sft_view(ds) for split, ds in dsd.items()}),
        "dpo": DatasetDict({split: dpo_view(ds) for split, ds in dsd.items()}),
    }
