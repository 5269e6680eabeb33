"""Import prompts from the released CULTURAX file, JSONL, CSV, Parquet, a Hugging Face dataset or the bundled seed set
into the one row schema (data_pipeline/schema.py).

Bad input never disappears silently: every problem raises an InputError naming file, line and field, or, with
``on_error="skip"``, becomes an entry of ``ImportResult.skipped`` that the pipeline counts in stats.json. Problems
that concern the whole file (a missing or renamed column, an encoding that cannot be told, an unreadable file)
always raise. Every format passes the same checks (data_pipeline/records.py): encoding detection with mojibake
refusal for the text formats, strict CSV, and no control characters or mojibake in any imported text.

"line" is the physical line number for text formats (the line where a CSV record starts; the header is line 1) and
the 1-based row number for Parquet and Hugging Face datasets.
"""

import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from core.sampling import sample_rows
from data_pipeline import taxonomy
from data_pipeline.records import ENCODINGS, InputError, csv_header, decode, jsonl_records, text_problem
from data_pipeline.schema import make_row

__all__ = ["FORMATS", "SEED_PATH", "ImportResult", "InputError", "SourceSpec", "load_source", "load_sources"]

logger = logging.getLogger(__name__)

# Prompts are user questions (the release's longest is ~700 characters). 20,000 characters (~5k tokens) leaves
# room for long, real questions while rejecting pasted documents or corrupt fields before they reach an LLM context.
MAX_TEXT_CHARS = 20_000

SEED_PATH = Path(__file__).resolve().parent / "seeds" / "prompts.jsonl"
FORMATS = ("seed", "culturax_release", "jsonl", "csv", "parquet", "hf")
DEFAULT_COLUMNS = {"prompt": "prompt", "subdomains": "subdomains", "id": "id", "responses": "responses"}
# The release's header; its three responses are kept in the order helpful, harmless, honest.
RELEASE_COLUMNS = {
    "prompt": "Question",
    "subdomains": "class",
    "responses": "helpful_response,harmless_response,honest_response",
}


@dataclass
class SourceSpec:
    format: str
    path: str = ""  # file path, or a Hugging Face dataset id / local dataset folder for "hf"
    split: str = "train"
    columns: dict[str, str] = field(default_factory=dict)  # our field -> their column; responses may list several
    on_error: str = "raise"  # "raise" | "skip"
    name: str = ""  # source label written into each row; derived from format and path when empty
    encoding: str = "auto"  # text formats: "auto" (UTF-8, UTF-8 with BOM or cp1252, detected), or one of those
    # Rows kept from this source: a sample seeded with the pipeline's seed, stratified by each row's first subdomain
    # (unlabelled rows are one stratum), in file order; None keeps every row. Never the first N rows.
    limit: int | None = None


@dataclass
class ImportResult:
    rows: list[dict]
    skipped: list[dict]  # {"file", "line", "field", "reason"}
    sources: list[dict] = field(default_factory=list)  # {"source", "format", "path", "encoding", "rows", "skipped"}


def load_source(spec: SourceSpec) -> ImportResult:
    return _load(spec)[0]


def _load(spec: SourceSpec) -> tuple[ImportResult, list[int]]:
    """The import result plus the line of each row (load_sources needs it to name a cross-source id clash)."""
    if spec.format not in FORMATS:
        raise ValueError(f"unknown source format {spec.format!r}; expected one of {FORMATS}")
    if spec.on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', not {spec.on_error!r}")
    if spec.encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, not {spec.encoding!r}")
    if spec.limit is not None and spec.limit < 1:
        raise ValueError(f"limit must be a positive number of rows (or null for all), not {spec.limit!r}")
    path = spec.path or (str(SEED_PATH) if spec.format == "seed" else "")
    if not path:
        raise ValueError(f"source format {spec.format!r} needs a path")
    explicit = {**RELEASE_COLUMNS, **spec.columns} if spec.format == "culturax_release" else spec.columns
    unknown = set(explicit) - set(DEFAULT_COLUMNS)
    if unknown:
        raise ValueError(f"unknown column mapping keys {sorted(unknown)}; expected some of {list(DEFAULT_COLUMNS)}")
    columns = {**DEFAULT_COLUMNS, **explicit}
    required = {"prompt"} | set(explicit)  # a column named on purpose must exist
    source = spec.name or _source_name(spec.format, path, spec.split)
    reader = _Reader(path, columns, required, source, spec.on_error)
    encoding = "utf-8"  # Arrow strings (Parquet, Hugging Face datasets) are UTF-8 by definition
    if spec.format in ("seed", "jsonl", "csv", "culturax_release"):
        text, encoding = decode(path, Path(path).read_bytes(), spec.encoding)
        records = reader.jsonl(text) if spec.format in ("seed", "jsonl") else reader.csv(text)
    elif spec.format == "parquet":
        import pyarrow.parquet as pq

        records = reader.table(pq.read_table(path).to_pylist(), pq.read_schema(path).names)
    else:
        dataset = _load_hf(path, spec.split)
        records = reader.table(dataset, dataset.column_names)
    result, lines = reader.convert(records)
    result.sources = [{"source": source, "format": spec.format, "path": path, "encoding": encoding,
                       "rows": len(result.rows), "skipped": len(result.skipped)}]  # fmt: skip
    if result.skipped:
        logger.warning("%s: skipped %d bad record(s), imported %d", path, len(result.skipped), len(result.rows))
    return result, lines


def load_sources(specs: list[SourceSpec], seed: int = 0) -> ImportResult:
    """Concatenate several sources, each cut to its ``limit`` (a stratified sample drawn with ``seed``). A row whose id
    repeats one from an earlier source is an InputError (or a skip)."""
    rows, skipped, sources, seen = [], [], [], {}
    for spec in specs:
        part, lines = _load(spec)
        if spec.limit is not None:
            kept = sample_rows(
                [(row["subdomains"][0] if row["subdomains"] else -1,) for row in part.rows], spec.limit, seed
            )
            part.sources[0].update(rows=len(kept), limit=spec.limit, rows_before_limit=len(part.rows))
            part.rows, lines = [part.rows[i] for i in kept], [lines[i] for i in kept]
        skipped.extend(part.skipped)
        sources.extend(part.sources)
        file = spec.path or str(SEED_PATH)
        for row, line in zip(part.rows, lines, strict=True):
            if row["id"] in seen:
                error = InputError(file, line, "id", f"duplicate id {row['id']!r} (first in {seen[row['id']]})")
                if spec.on_error == "raise":
                    raise error
                skipped.append(error.as_skip())
                sources[-1]["rows"] -= 1
                sources[-1]["skipped"] += 1
                continue
            seen[row["id"]] = file
            rows.append(row)
    return ImportResult(rows, skipped, sources)


def _source_name(fmt: str, path: str, split: str) -> str:
    if fmt == "seed":
        return "seed"
    if fmt == "hf":
        return f"hf:{path}:{split}"
    return f"{fmt}:{Path(path).name}"


def _load_hf(path: str, split: str):
    """A local save_to_disk folder (e.g. a pipeline's output_dir/dataset) or anything datasets.load_dataset reads."""
    import datasets

    local = Path(path)
    if (local / "dataset_dict.json").exists() or (local / "state.json").exists():
        loaded = datasets.load_from_disk(str(local))
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise InputError(path, 0, "split", f"split {split!r} not found; available: {list(loaded)}")
            return loaded[split]
        return loaded
    return datasets.load_dataset(path, split=split)


class _Reader:
    """Turns the records of one file into schema rows, collecting skips or raising on the first problem."""

    def __init__(self, path: str, columns: dict[str, str], required: set[str], source: str, on_error: str):
        self.path, self.columns, self.required, self.source, self.on_error = path, columns, required, source, on_error
        self.skipped: list[dict] = []

    # --- record producers: yield (line, {their column: value}) or an InputError for an unreadable record ---
    def jsonl(self, text: str) -> Iterator[tuple[int, dict] | InputError]:
        return jsonl_records(self.path, text)

    def csv(self, text: str) -> Iterator[tuple[int, dict] | InputError]:
        header, records = csv_header(self.path, text)
        self._check_columns(header, 1)
        return records

    def table(self, records: Iterable[dict], names: list[str]) -> Iterator[tuple[int, dict]]:
        self._check_columns(names, 0)
        yield from enumerate(records, start=1)

    def _check_columns(self, names: list[str], line: int) -> None:
        for ours in sorted(self.required):
            for theirs in _column_list(self.columns[ours]):
                if theirs not in names:
                    raise InputError(self.path, line, ours, f"column {theirs!r} not found; the file has {names}")

    # --- conversion of one record into one schema row ---
    def convert(self, records: Iterable[tuple[int, dict] | InputError]) -> tuple[ImportResult, list[int]]:
        rows, ids = [], {}
        for item in records:
            try:
                if isinstance(item, InputError):
                    raise item
                line, record = item
                row = self._row(line, record)
                if row["id"] in ids:
                    first = ids[row["id"]]
                    raise InputError(self.path, line, "id", f"duplicate id {row['id']!r} (first on line {first})")
                ids[row["id"]] = line
                rows.append(row)
            except InputError as error:
                if self.on_error == "raise":
                    raise
                self.skipped.append(error.as_skip())
        return ImportResult(rows, self.skipped), list(ids.values())

    def _row(self, line: int, record: dict) -> dict:
        prompt = self._text(line, record, "prompt", self._get(line, record, "prompt", self.columns["prompt"]))
        subdomains = self._subdomains(line, self._get(line, record, "subdomains", self.columns["subdomains"]))
        responses: list[str] = []
        for column in _column_list(self.columns["responses"]):
            value = self._get(line, record, "responses", column)
            for text in value if isinstance(value, list) else [value]:
                if text is not None and text != "":
                    responses.append(self._text(line, record, "responses", text, column))
        row_id = self._get(line, record, "id", self.columns["id"])
        row_id = f"{self.source}:{line}" if row_id in (None, "") else str(row_id)
        if problem := text_problem(row_id):
            raise InputError(self.path, line, "id", problem)
        return make_row(row_id, prompt, subdomains, self.source, responses)

    def _get(self, line: int, record: dict, ours: str, theirs: str):
        if theirs not in record:
            if ours in self.required:
                raise InputError(self.path, line, ours, f"missing (no {theirs!r} in this record)")
            return None
        return record[theirs]

    def _text(self, line: int, record: dict, ours: str, value, theirs: str | None = None) -> str:
        if not isinstance(value, str):
            what = "missing" if value is None else f"expected text, got {type(value).__name__}"
            raise InputError(self.path, line, ours, what)
        if problem := text_problem(value):  # before strip(): it would drop control characters at either end
            raise InputError(self.path, line, ours, f"{problem} (column {theirs or self.columns[ours]!r})")
        value = value.strip()  # stray leading spaces (as in the release) would hide exact duplicates
        if not value:
            raise InputError(self.path, line, ours, "empty text")
        if len(value) > MAX_TEXT_CHARS:
            raise InputError(self.path, line, ours, f"{len(value):,} characters; the limit is {MAX_TEXT_CHARS:,}")
        return value

    def _subdomains(self, line: int, value) -> list[int]:
        """Accepts an id, a list of ids, names, or text such as "15", "15,19" or "[15, 19]"; None means unlabelled."""
        if isinstance(value, str):
            if problem := text_problem(value):
                raise InputError(self.path, line, "subdomains", problem)
            value = [token for token in re.split(r"[,;|\[\]]+", value) if token.strip()] or None
        if value is None or value == []:
            if "subdomains" in self.required:
                raise InputError(self.path, line, "subdomains", "empty class label")
            return []
        items = value if isinstance(value, list) else [value]
        ids = []
        for item in items:
            ids.append(self._subdomain_id(line, item))
        return list(dict.fromkeys(ids))

    def _subdomain_id(self, line: int, item) -> int:
        if isinstance(item, bool) or not isinstance(item, int | str):
            raise InputError(self.path, line, "subdomains", f"class must be an id or a name, got {item!r}")
        text = str(item).strip()
        try:
            number = int(text)
        except ValueError:
            try:
                return taxonomy.by_name(text).id
            except KeyError:
                raise InputError(self.path, line, "subdomains", f"unknown class name {text!r}") from None
        if number not in taxonomy.SUBDOMAINS:
            raise InputError(self.path, line, "subdomains", f"unknown class id {number}")
        return number


def _column_list(spec: str) -> list[str]:
    return [name.strip() for name in spec.split(",")] if "," in spec else [spec]
