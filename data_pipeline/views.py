"""Ready-to-train views of the judged dataset for TRL 1.x, in its conversational formats, with no further mapping.

- SFT (language modeling): "messages" = [user prompt, assistant chosen] + "id", "subdomains".
- DPO (preference, explicit prompt): "prompt" = [user], "chosen" = [assistant], "rejected" = [assistant]
  + "id", "subdomains", "score_chosen", "score_rejected"; only rows with a preference pair.
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


def sft_view(ds: Dataset) -> Dataset:
    rows = [
        {
            "messages": [{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row["chosen"]}],
            "id": row["id"],
            "subdomains": row["subdomains"],
        }
        for row in ds
    ]
    return _dataset(rows, SFT_FEATURES)


def dpo_view(ds: Dataset) -> Dataset:
    rows = [
        {
            "prompt": [{"role": "user", "content": row["prompt"]}],
            "chosen": [{"role": "assistant", "content": row["chosen"]}],
            "rejected": [{"role": "assistant", "content": row["rejected"]}],
            "id": row["id"],
            "subdomains": row["subdomains"],
            "score_chosen": row["score_chosen"],
            "score_rejected": row["score_rejected"],
        }
        for row in ds
        if _has_pair(row)
    ]
    return _dataset(rows, DPO_FEATURES)


def build_views(dsd: DatasetDict) -> dict[str, DatasetDict]:
    """{"sft": DatasetDict, "dpo": DatasetDict} with the same splits as `dsd` (the judged rows)."""
    for split, ds in dsd.items():
        _check_columns(ds, split)
    return {
        "sft": DatasetDict({split: sft_view(ds) for split, ds in dsd.items()}),
        "dpo": DatasetDict({split: dpo_view(ds) for split, ds in dsd.items()}),
    }
