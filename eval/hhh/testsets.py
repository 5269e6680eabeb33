"""Test sets, each normalised to a datasets.Dataset with an "id" and a "prompt" column.

- culturax: the data pipeline's test split (schema rows: id, prompt, subdomains).
- helpfulness: AlpacaEval 2.0 instructions with GPT-4 Turbo's reference answers -> id, prompt, reference.
- harmlessness: harmful prompts (BeaverTails) -> id, prompt, category (the list of flagged harm categories).
- honesty: TruthfulQA questions -> id, prompt, best_answer, correct_answers, incorrect_answers, category.

Each HHH set comes from one of three places, named in the config in place of the hub id:
- "fixture": the small original offline sets in eval/fixtures/*.jsonl, written for this project;
- a local copy of the hub dataset, rows in the hub's own schema: a JSON (list) or JSONL file, a parquet file, or a
  ``save_to_disk`` folder (how offline clusters run); eval/fixtures/hub/ holds small files of that kind;
- a hub id, loaded with ``datasets.load_dataset`` at the config's pinned revision. AlpacaEval's hub repo is a
  loading script, which datasets 5.x refuses, so its data file is read with the json builder.
Local and hub rows go through the same schema check and the same normalisation. A missing file, or a row without a
field the code reads, is an EvalInputError naming the file, the row and the field; fields the code never reads
(BeaverTails' ``response``, TruthfulQA's ``type`` and ``source``, AlpacaEval's ``dataset``) may be empty or absent.

AlpacaEval 2.0 (Dubois et al., 2024) is ``alpaca_eval_gpt4_baseline.json`` in tatsu-lab/alpaca_eval: the 805
instructions of AlpacaEval with GPT-4 Turbo's answers (``generator`` "gpt4_1106_preview") as the reference. The same
repo's ``alpaca_eval.json`` is AlpacaEval 1.0 (text-davinci-003's answers): a row whose generator is not GPT-4 Turbo
is refused, so a 1.0 file cannot be reported under the 2.0 label.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset, DatasetDict, load_dataset, load_from_disk

from core.sampling import sample_rows

FIXTURES_DIR = Path(__file__).parents[1] / "fixtures"
LOCAL_SUFFIXES = (".json", ".jsonl", ".parquet")
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
    """Bad test-set input; the message names file, row (or line) and field."""


def _text(value) -> str | None:
    return None if isinstance(value, str) and value.strip() else "expected a non-empty string"


def _texts(value) -> str | None:
    ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    return None if ok else "expected a list of strings"


def _flags(value) -> str | None:
    ok = isinstance(value, dict) and value and all(isinstance(v, bool) for v in value.values())
    return None if ok else "expected a mapping of category name -> bool"


def _bool(value) -> str | None:
    return None if isinstance(value, bool) else "expected a bool"


ALPACA_EVAL_VERSION = "2.0"
ALPACA_EVAL_REFERENCE = "gpt4_1106_preview"  # GPT-4 Turbo, AlpacaEval 2.0's baseline


def _alpaca_eval_2_reference(value) -> str | None:
    if value == ALPACA_EVAL_REFERENCE:
        return None
    return (f"expected {ALPACA_EVAL_REFERENCE!r} (AlpacaEval 2.0's reference, alpaca_eval_gpt4_baseline.json), got "
            f"{value!r}: alpaca_eval.json is AlpacaEval 1.0 (text-davinci-003)")  # fmt: skip


def _ids(value) -> str | None:
    return None if isinstance(value, list) and all(isinstance(v, int) for v in value) else "expected a list of ints"


@dataclass(frozen=True)
class HubSet:
    """A hub dataset as published: where it lives, which split is evaluated, and the fields its rows carry."""

    hub_id: str
    config: str | None
    split: str
    fields: dict[str, Callable]  # field -> check returning None (ok) or what was expected
    data_file: str | None = None  # read this file of the repo with the json builder instead of the repo itself


HUB_SETS = {
    # AlpacaEval 2.0: 805 instructions with GPT-4 Turbo's outputs (split "eval" of the script = the whole file).
    "helpfulness": HubSet(
        "tatsu-lab/alpaca_eval",
        None,
        "eval",
        {"instruction": _text, "output": _text, "generator": _alpaca_eval_2_reference},
        data_file="alpaca_eval_gpt4_baseline.json",
    ),
    # BeaverTails 30k_test: QA pairs, each labelled per harm category (14 booleans) and is_safe; the response text
    # itself is never read (the evaluated model answers the prompt).
    "harmlessness": HubSet(
        "PKU-Alignment/BeaverTails",
        None,
        "30k_test",
        {"prompt": _text, "category": _flags, "is_safe": _bool},
    ),
    # TruthfulQA generation config: 817 questions, split "validation" (its type and source are never read).
    "honesty": HubSet(
        "truthfulqa/truthful_qa",
        "generation",
        "validation",
        {
            "category": _text,
            "question": _text,
            "best_answer": _text,
            "correct_answers": _texts,
            "incorrect_answers": _texts,
        },
    ),
}
HUB_IDS = {name: hub.hub_id for name, hub in HUB_SETS.items()}
CULTURAX_FIELDS = {"id": _text, "prompt": _text, "subdomains": _ids}


def read_fixture(path: Path, fields: dict[str, type]) -> Dataset:
    """A project JSONL test set; every line must carry every field with the right type (else EvalInputError)."""
    rows = []
    for line_no, record in _jsonl_rows(path):
        for name, kind in fields.items():
            value = record.get(name)
            if not isinstance(value, kind) or (kind is str and not value.strip()):
                raise EvalInputError(f"{path}:{line_no}: field '{name}': expected non-empty {kind.__name__}")
        rows.append({name: record[name] for name in fields})
    if not rows:
        raise EvalInputError(f"{path}:1: field '<file>': no rows")
    return Dataset.from_list(rows)


def _jsonl_rows(path: Path):
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise EvalInputError(f"{path}:{line_no}: field '<line>': invalid JSON ({err.msg})") from err
            if not isinstance(record, dict):
                raise EvalInputError(f"{path}:{line_no}: field '<line>': expected a JSON object")
            yield line_no, record


def is_local_source(source: str) -> bool:
    """A path rather than a hub id: it exists here, or it names a data file (which then must exist)."""
    return Path(source).exists() or source.endswith(LOCAL_SUFFIXES) or source.startswith((".", "/"))


def read_local_rows(source: str, split: str) -> list[tuple[str, dict]]:
    """(location, row) pairs of a local copy: JSONL (location "file:LINE"), a JSON list, parquet or a
    ``save_to_disk`` folder (location "file: row N"); a DatasetDict folder gives its ``split``."""
    path = Path(source)
    if not path.exists():
        raise EvalInputError(f"{path}: file not found (a JSON/JSONL/parquet file or a save_to_disk folder)")
    if path.suffix == ".jsonl":
        return [(f"{path}:{line_no}", record) for line_no, record in _jsonl_rows(path)]
    if path.suffix == ".json":
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise EvalInputError(f"{path}:{err.lineno}: field '<file>': invalid JSON ({err.msg})") from err
        if not isinstance(records, list):
            raise EvalInputError(f"{path}: field '<file>': expected a JSON list of row objects")
    elif path.suffix == ".parquet":
        records = Dataset.from_parquet(str(path)).to_list()
    elif path.is_dir():
        loaded = load_from_disk(str(path))
        if isinstance(loaded, DatasetDict):
            if split not in loaded:
                raise EvalInputError(f"{path}: split '{split}' missing (has {sorted(loaded)})")
            loaded = loaded[split]
        records = loaded.to_list()
    else:
        raise EvalInputError(f"{path}: unsupported file type (use .json, .jsonl, .parquet or a save_to_disk folder)")
    return [(f"{path}: row {i}", record) for i, record in enumerate(records, start=1)]


def checked_rows(located: list[tuple[str, dict]], fields: dict[str, Callable], where: str) -> list[dict]:
    """Rows whose every required field passes its check; the first bad one raises, naming file, row and field."""
    if not located:
        raise EvalInputError(f"{where}: field '<file>': no rows")
    rows = []
    for location, record in located:
        if not isinstance(record, dict):
            raise EvalInputError(f"{location}: field '<row>': expected an object")
        for name, check in fields.items():
            problem = "missing" if name not in record else check(record[name])
            if problem:
                raise EvalInputError(f"{location}: field '{name}': {problem}")
        rows.append(record)
    return rows


def hub_rows(hub: HubSet, source: str, revision: str | None) -> list[tuple[str, dict]]:
    """Rows of the hub dataset ``source`` at ``revision`` (None: the default branch)."""
    if hub.data_file:  # a script repo: read its data file directly (hf:// path, revision after "@")
        url = f"hf://datasets/{source}@{revision or 'main'}/{hub.data_file}"
        ds = load_dataset("json", data_files=url, split="train")
    else:
        ds = load_dataset(source, hub.config, split=hub.split, revision=revision)
    label = f"{source}@{revision or 'main'} [{hub.split}]"
    return [(f"{label}: row {i}", record) for i, record in enumerate(ds, start=1)]


def _helpfulness(rows: list[dict]) -> Dataset:
    return Dataset.from_dict(
        {
            "id": [f"alpaca_eval-{i:04d}" for i in range(len(rows))],
            "prompt": [r["instruction"] for r in rows],
            "reference": [r["output"] for r in rows],
        }
    )


def _harmlessness(rows: list[dict]) -> Dataset:
    # Evaluate each distinct prompt that has an unsafe-labelled response once; its categories are every category
    # flagged on any of its unsafe responses, kept as a list (names contain commas: no joined string).
    categories: dict[str, set[str]] = {}
    for row in rows:
        if not row["is_safe"]:
            flagged = {name for name, on in row["category"].items() if on}
            categories.setdefault(row["prompt"], set()).update(flagged)
    return Dataset.from_dict(
        {
            "id": [f"beavertails-{i:05d}" for i in range(len(categories))],
            "prompt": list(categories),
            "category": [sorted(c) for c in categories.values()],
        }
    )


def _honesty(rows: list[dict]) -> Dataset:
    return Dataset.from_dict(
        {
            "id": [f"truthfulqa-{i:03d}" for i in range(len(rows))],
            "prompt": [r["question"] for r in rows],
            "best_answer": [r["best_answer"] for r in rows],
            "correct_answers": [r["correct_answers"] for r in rows],
            "incorrect_answers": [r["incorrect_answers"] for r in rows],
            "category": [r["category"] for r in rows],
        }
    )


NORMALISE = {"helpfulness": _helpfulness, "harmlessness": _harmlessness, "honesty": _honesty}


def load_hhh_set(name: str, source: str, revision: str | None = None) -> Dataset:
    """One HHH set: the project fixture, a local copy in the hub's schema, or the hub dataset at ``revision``."""
    hub = HUB_SETS[name]
    if source == "fixture":
        ds = read_fixture(FIXTURES_DIR / FIXTURE_FILES[name], FIXTURE_FIELDS[name])
        return ds.map(lambda row: {"category": [row["category"]]}) if name == "harmlessness" else ds
    located = read_local_rows(source, hub.split) if is_local_source(source) else hub_rows(hub, source, revision)
    ds = NORMALISE[name](checked_rows(located, hub.fields, source))
    if not len(ds):
        raise EvalInputError(f"{source}: field '<file>': no prompt to evaluate after selecting {name} rows")
    return ds


def load_culturax(source: str, split: str = "test") -> tuple[Dataset, Dataset | None]:
    """The pipeline's test split (and its train split, for the leakage check, when present): a ``save_to_disk``
    DatasetDict (the pipeline's ``<out>/dataset``) or one split as a folder, JSON/JSONL or parquet file."""
    path = Path(source)
    if not path.exists():
        raise EvalInputError(f"{path}: CULTURAX dataset not found (a data pipeline `<out>/dataset` or a rows file)")
    train = None
    if path.is_dir():
        loaded = load_from_disk(str(path))
        if isinstance(loaded, DatasetDict):
            train = loaded["train"] if "train" in loaded and split != "train" else None
    rows = checked_rows(read_local_rows(source, split), CULTURAX_FIELDS, source)
    test = Dataset.from_list([{name: row[name] for name in CULTURAX_FIELDS} for row in rows])
    return test, train


# Each set's strata for a cut (max_prompts_per_set): CULTURAX by first subdomain, BeaverTails by first harm category,
# TruthfulQA by category (the fixture has none); AlpacaEval's rows keep no category (a plain seeded sample).
STRATUM = {
    "culturax": lambda row: (row["subdomains"][0] if row["subdomains"] else -1,),
    "helpfulness": lambda row: (),
    "harmlessness": lambda row: (row["category"][0] if row["category"] else "",),
    "honesty": lambda row: (row.get("category", ""),),  # the fixture has none
}


def sample_set(ds: Dataset, name: str, cap: int | None, seed: int) -> Dataset:
    """``cap`` rows of a set, a seeded sample stratified by STRATUM[name] (core/sampling.py), in the set's order."""
    rows = sample_rows([STRATUM[name](row) for row in ds], cap, seed)
    return ds if len(rows) == len(ds) else ds.select(rows)


def load_test_sets(cfg) -> tuple[dict[str, Dataset], Dataset | None]:
    """All sets the config names, each cut to its cap (cfg.max_prompts); returns (sets, culturax train split)."""
    sets = {name: load_hhh_set(name, getattr(cfg, name), getattr(cfg, f"{name}_revision")) for name in HUB_SETS}
    train = None
    if cfg.culturax_dataset:
        sets["culturax"], train = load_culturax(cfg.culturax_dataset, cfg.culturax_split)
    return {name: sample_set(ds, name, cfg.max_prompts(name), cfg.seed) for name, ds in sets.items()}, train


def source_of(cfg, name: str) -> str:
    """Where a set came from, for the report."""
    if name == "culturax":
        return f"{cfg.culturax_dataset} [{cfg.culturax_split}]"
    source = getattr(cfg, name)
    hub = HUB_SETS[name]
    what = f"{hub.hub_id} {hub.data_file}" if hub.data_file else f"{hub.hub_id} [{hub.split}]"
    if name == "helpfulness":
        what = f"AlpacaEval {ALPACA_EVAL_VERSION}, reference {ALPACA_EVAL_REFERENCE} (GPT-4 Turbo): {what}"
    if source == "fixture":
        return f"fixture eval/fixtures (original, offline; stands in for {what})"
    if is_local_source(source):
        return f"{source} (local copy in the schema of {what})"
    return f"{source}@{getattr(cfg, f'{name}_revision') or 'main'} ({what})"
