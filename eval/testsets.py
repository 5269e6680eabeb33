"""Test sets, each normalised to a datasets.Dataset with an "id" and a "prompt" column.

- culturax: the data pipeline's `<out>/dataset` DatasetDict, split "test" (schema rows: id, prompt, subdomains).
- helpfulness: prompts with reference answers (AlpacaEval style) -> id, prompt, reference.
- harmlessness: harmful prompts (BeaverTails style) -> id, prompt, category.
- honesty: TruthfulQA-style questions -> id, prompt, best_answer, correct_answers, incorrect_answers.

Each HHH set is either "fixture" (the small original offline sets in eval/fixtures/, written for this project) or
its hub id, loaded with datasets.load_dataset. The hub loaders need the network and are not exercised by the
offline tests.
"""

import json
from pathlib import Path

from datasets import Dataset, load_dataset, load_from_disk

FIXTURES_DIR = Path(__file__).parent / "fixtures"
HUB_IDS = {
    "helpfulness": "tatsu-lab/alpaca_eval",
    "harmlessness": "PKU-Alignment/BeaverTails",
    "honesty": "truthfulqa/truthful_qa",
}
FIXTURE_FILES = {"helpfulness": "helpfulness.jsonl", "harmlessness": "harmful.jsonl", "honesty": "truthfulqa.jsonl"}
FIXTURE_FIELDS = {
    "helpfulness": {"id": str, "prompt": str, "reference": str},
    "harmlessness": {"id": str, "prompt": str, "category": str},
    "honesty": {
        "id": str,
        "prompt": str,
        "best_answer": str,
        "correct_answers": list,
        "incorrect_answers": list,
    },
}


class EvalInputError(ValueError):
    """Bad test-set input; the message names file, line and field."""


def read_fixture(path: Path, fields: dict[str, type]) -> Dataset:
    """A JSONL test set; every line must carry every field with the right type (else EvalInputError)."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise EvalInputError(f"{path}:{line_no}: field '<line>': invalid JSON ({err.msg})") from err
            for name, kind in fields.items():
                value = record.get(name)
                if not isinstance(value, kind) or (kind is str and not value.strip()):
                    raise EvalInputError(f"{path}:{line_no}: field '{name}': expected non-empty {kind.__name__}")
            rows.append({name: record[name] for name in fields})
    if not rows:
        raise EvalInputError(f"{path}:1: field '<file>': no rows")
    return Dataset.from_list(rows)


def _hub_helpfulness(source: str) -> Dataset:
    # AlpacaEval 805 instructions with the reference model's outputs ("output") in split "eval".
    ds = load_dataset(source, "alpaca_eval", split="eval")
    return Dataset.from_dict(
        {
            "id": [f"alpaca_eval-{i:04d}" for i in range(len(ds))],
            "prompt": ds["instruction"],
            "reference": ds["output"],
        }
    )


def _hub_harmlessness(source: str) -> Dataset:
    # BeaverTails 30k_test: QA pairs labelled per harm category; evaluate each distinct unsafe-labelled prompt once.
    ds = load_dataset(source, split="30k_test").filter(lambda row: not row["is_safe"])
    seen: dict[str, str] = {}
    for prompt, category in zip(ds["prompt"], ds["category"], strict=True):
        if prompt not in seen:
            seen[prompt] = ",".join(sorted(name for name, flagged in category.items() if flagged))
    return Dataset.from_dict(
        {
            "id": [f"beavertails-{i:05d}" for i in range(len(seen))],
            "prompt": list(seen),
            "category": list(seen.values()),
        }
    )


def _hub_honesty(source: str) -> Dataset:
    ds = load_dataset(source, "generation", split="validation")
    return Dataset.from_dict(
        {
            "id": [f"truthfulqa-{i:03d}" for i in range(len(ds))],
            "prompt": ds["question"],
            "best_answer": ds["best_answer"],
            "correct_answers": ds["correct_answers"],
            "incorrect_answers": ds["incorrect_answers"],
        }
    )


HUB_LOADERS = {"helpfulness": _hub_helpfulness, "harmlessness": _hub_harmlessness, "honesty": _hub_honesty}


def load_hhh_set(name: str, source: str) -> Dataset:
    """One HHH set: the offline fixture, or the hub dataset `source` in that set's layout."""
    if source == "fixture":
        return read_fixture(FIXTURES_DIR / FIXTURE_FILES[name], FIXTURE_FIELDS[name])
    return HUB_LOADERS[name](source)


def load_culturax(dataset_dir: str, split: str = "test") -> tuple[Dataset, Dataset | None]:
    """The pipeline's test split (and its train split, for the leakage check, when present)."""
    path = Path(dataset_dir)
    if not path.exists():
        raise EvalInputError(f"{path}: CULTURAX dataset folder not found (a data pipeline `<out>/dataset`)")
    dsd = load_from_disk(str(path))
    if split not in dsd:
        raise EvalInputError(f"{path}: split '{split}' missing (has {sorted(dsd)})")
    test = dsd[split]
    for column in ("id", "prompt", "subdomains"):
        if column not in test.column_names:
            raise EvalInputError(f"{path}/{split}: field '{column}': column missing (schema rows expected)")
    return test, dsd["train"] if "train" in dsd else None


def load_test_sets(cfg) -> tuple[dict[str, Dataset], Dataset | None]:
    """All sets the config names, each cut to `max_prompts_per_set`; returns (sets, culturax train split)."""
    sets = {name: load_hhh_set(name, getattr(cfg, name)) for name in HUB_LOADERS}
    train = None
    if cfg.culturax_dataset:
        sets["culturax"], train = load_culturax(cfg.culturax_dataset, cfg.culturax_split)
    if cfg.max_prompts_per_set is not None:
        sets = {name: ds.select(range(min(cfg.max_prompts_per_set, len(ds)))) for name, ds in sets.items()}
    return sets, train


def source_of(cfg, name: str) -> str:
    """Where a set came from, for the report."""
    if name == "culturax":
        return f"{cfg.culturax_dataset} [{cfg.culturax_split}]"
    source = getattr(cfg, name)
    return (
        f"fixture eval/fixtures (original, offline; stands in for {HUB_IDS[name]})" if source == "fixture" else source
    )
