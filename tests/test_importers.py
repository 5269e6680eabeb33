"""Importers: the release as published, every supported format, the seed set, and every kind of bad input."""

import csv
import itertools
import json
from collections import Counter

import pytest
from simhash import Simhash

from data_pipeline import taxonomy
from data_pipeline.importers import MAX_TEXT_CHARS, SEED_PATH, InputError, SourceSpec, load_source, load_sources
from data_pipeline.schema import ROW_FEATURES, rows_to_dataset

RELEASE_HEADER = "Question,class,domain,helpful_response,harmless_response,honest_response,simhash_id,pass_hhh,,,,"


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def release_file(path, body_lines: list[bytes], header: str = RELEASE_HEADER):
    path.write_bytes(header.encode() + b"\r\n" + b"\r\n".join(body_lines) + b"\r\n")
    return path


# --- the release, exactly as published ---


def test_release_imports_every_row_with_its_three_responses(culturax_release):
    result = load_source(SourceSpec("culturax_release", str(culturax_release)))
    assert len(result.rows) == 1500 and result.skipped == []
    assert result.sources[0]["encoding"] == "cp1252"  # detected, not assumed
    assert len({row["id"] for row in result.rows}) == 1500
    food_tour = result.rows[1]  # the published file's line 3
    assert food_tour["prompt"].startswith("I'm planning a food tour of Mexico")
    assert food_tour["subdomains"] == [19]
    assert food_tour["responses"][0].startswith("Expect parades filled with regional dishes")  # helpful
    assert food_tour["responses"][1].startswith("Engage respectfully by sampling foods")  # harmless
    assert food_tour["responses"][2].startswith("Cultural research notes")  # honest
    assert "\u2019" in food_tour["responses"][0]  # Windows-1252 byte 0x92 decoded as a right single quote
    counts = Counter(i for row in result.rows for i in row["subdomains"])
    assert set(counts) == taxonomy.RELEASE_IDS and counts[15] == 387 and counts[25] == 1
    assert rows_to_dataset(result.rows).features == ROW_FEATURES


def test_release_format_ignores_simhash_id_and_empty_trailing_columns(tmp_path):
    line = b'"Where to eat in Lyon?",11,Food,"Try a bouchon.","Be polite.","Lyon is known for it.",1.43E+19,"1,1,1",,,,'
    rows = load_source(SourceSpec("culturax_release", str(release_file(tmp_path / "r.csv", [line])))).rows
    assert rows == [
        {
            "id": "culturax_release:r.csv:2",
            "prompt": "Where to eat in Lyon?",
            "subdomains": [11],
            "source": "culturax_release:r.csv",
            "responses": ["Try a bouchon.", "Be polite.", "Lyon is known for it."],
            "origin": "original",
            "parents": [],
            "generator": "",
        }
    ]


# --- the seed set ---


def test_seed_set_covers_the_release_ids_with_original_distinct_prompts():
    rows = load_source(SourceSpec("seed")).rows
    assert len(rows) >= 300
    counts = Counter(i for row in rows for i in row["subdomains"])
    assert all(counts[i] >= 5 for i in taxonomy.RELEASE_IDS), {i: counts[i] for i in taxonomy.RELEASE_IDS}
    assert set(counts) <= set(taxonomy.SUBDOMAINS)
    assert sum(len(row["subdomains"]) > 1 for row in rows) >= 10
    assert [row["id"] for row in rows] == [f"seed-{n:04d}" for n in range(1, len(rows) + 1)]
    fingerprints = [Simhash(row["prompt"]).value for row in rows]
    close = [(a, b) for a, b in itertools.combinations(range(len(rows)), 2)
             if (fingerprints[a] ^ fingerprints[b]).bit_count() <= 10]  # fmt: skip
    assert close == [], [(rows[a]["prompt"], rows[b]["prompt"]) for a, b in close]


def test_seed_prompts_are_not_copied_from_the_release(culturax_release):
    release = {row["prompt"].lower() for row in load_source(SourceSpec("culturax_release", str(culturax_release))).rows}
    assert not [row["prompt"] for row in load_source(SourceSpec("seed")).rows if row["prompt"].lower() in release]


# --- other formats and column mapping ---

RECORDS = [
    {"question": "How is mate shared in Uruguay?", "label": "11", "uid": "a"},
    {"question": "What is the Palio of Siena?", "label": "15,14", "uid": "b"},
]
MAPPING = {"prompt": "question", "subdomains": "label", "id": "uid"}
EXPECTED = [("a", "How is mate shared in Uruguay?", [11]), ("b", "What is the Palio of Siena?", [15, 14])]


def summary(rows):
    return [(row["id"], row["prompt"], row["subdomains"]) for row in rows]


def test_jsonl_csv_parquet_and_hf_give_the_same_rows(tmp_path):
    import datasets

    write_jsonl(tmp_path / "p.jsonl", RECORDS)
    with open(tmp_path / "p.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(RECORDS[0]))
        writer.writeheader()
        writer.writerows(RECORDS)
    (tmp_path / "hub").mkdir()
    datasets.Dataset.from_list(RECORDS).to_parquet(str(tmp_path / "p.parquet"))
    datasets.Dataset.from_list(RECORDS).to_parquet(str(tmp_path / "hub" / "train.parquet"))
    datasets.DatasetDict({"test": datasets.Dataset.from_list(RECORDS)}).save_to_disk(str(tmp_path / "saved"))
    specs = [
        SourceSpec("jsonl", str(tmp_path / "p.jsonl"), columns=MAPPING),
        SourceSpec("csv", str(tmp_path / "p.csv"), columns=MAPPING),
        SourceSpec("parquet", str(tmp_path / "p.parquet"), columns=MAPPING),
        SourceSpec("hf", str(tmp_path / "hub"), split="train", columns=MAPPING),  # load_dataset, parquet builder
        SourceSpec("hf", str(tmp_path / "saved"), split="test", columns=MAPPING),  # load_from_disk
    ]
    for spec in specs:
        result = load_source(spec)
        assert summary(result.rows) == EXPECTED, spec
        assert result.skipped == []
    assert load_source(specs[3]).rows[0]["source"] == f"hf:{tmp_path / 'hub'}:train"


def test_unlabelled_prompts_and_responses_lists(tmp_path):
    record = {"prompt": "What is a ceilidh?", "responses": ["A Gaelic social dance."]}
    path = write_jsonl(tmp_path / "u.jsonl", [record])
    (row,) = load_source(SourceSpec("jsonl", str(path), name="mine")).rows
    assert (row["id"], row["subdomains"], row["responses"], row["source"]) == (
        "mine:1",
        [],
        ["A Gaelic social dance."],
        "mine",
    )


def test_load_sources_concatenates_and_refuses_clashing_ids(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"id": "x1", "prompt": "What is kabuki?", "subdomains": [20]}])
    combined = load_sources([SourceSpec("seed"), SourceSpec("jsonl", str(path))])
    assert len(combined.rows) == len(load_source(SourceSpec("seed")).rows) + 1
    clash = write_jsonl(tmp_path / "c.jsonl", [{"id": "seed-0002", "prompt": "What is noh?", "subdomains": [20]}])
    with pytest.raises(InputError, match=r"c\.jsonl:1: field 'id': duplicate id 'seed-0002'"):
        load_sources([SourceSpec("seed"), SourceSpec("jsonl", str(clash))])
    skipped = load_sources([SourceSpec("seed"), SourceSpec("jsonl", str(clash), on_error="skip")])
    assert [s["field"] for s in skipped.skipped] == ["id"]


def test_a_source_limit_is_a_seeded_sample_stratified_by_subdomain(tmp_path):
    """7 rows of subdomain 15 first, then 2 of 11 and 1 unlabelled; limit 4 by largest remainder: shares 2.8, 0.8, 0.4
    -> floors 2, 0, 0 and the 2 leftover rows to the largest fractions (15, 11): 3 of 15, 1 of 11, none unlabelled.
    The first 4 rows (all of 15) would be wrong; rows keep file order; the same seed draws the same rows."""
    records = [{"id": f"r{i}", "prompt": f"Question {i} about Diwali?", "subdomains": [15]} for i in range(7)]
    records += [{"id": f"r{i}", "prompt": f"Question {i} about tea?", "subdomains": [11]} for i in (7, 8)]
    records += [{"id": "r9", "prompt": "Question 9 about nothing in particular?", "subdomains": []}]
    path = write_jsonl(tmp_path / "x.jsonl", records)
    spec = SourceSpec("jsonl", str(path), limit=4)
    picked = load_sources([spec], seed=3)
    subdomains = [tuple(row["subdomains"]) for row in picked.rows]
    assert sorted(subdomains) == [(11,), (15,), (15,), (15,)]
    ids = [row["id"] for row in picked.rows]
    assert ids == sorted(ids, key=lambda i: int(i[1:])) and ids != ["r0", "r1", "r2", "r3"]
    assert [row["id"] for row in load_sources([spec], seed=3).rows] == ids
    draws = {tuple(row["id"] for row in load_sources([spec], seed=s).rows) for s in range(20)}
    assert len(draws) > 1  # the seed decides which rows of a stratum
    assert picked.sources[0] | {"path": None} == {
        "source": "jsonl:x.jsonl", "format": "jsonl", "path": None, "encoding": "utf-8", "rows": 4, "skipped": 0,
        "limit": 4, "rows_before_limit": 10,
    }  # fmt: skip
    assert len(load_sources([SourceSpec("jsonl", str(path), limit=50)]).rows) == 10
    with pytest.raises(ValueError, match="limit must be a positive number of rows"):
        load_sources([SourceSpec("jsonl", str(path), limit=0)])


# --- bad input: an error naming file, line and field, or a counted skip ---

GOOD = b'{"prompt": "What is Nowruz?", "subdomains": [15]}'


def bad_jsonl(tmp_path, bad_line: bytes):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(GOOD + b"\n" + bad_line + b"\n" + GOOD.replace(b"Nowruz", b"Songkran") + b"\n")
    return SourceSpec("jsonl", str(path))


BAD_JSONL = {
    "nul_byte": (b'{"prompt": "Caf\\u0000 culture in Vienna?", "subdomains": [11]}', "prompt", "U+0000 at character 4"),
    "malformed": (b'{"prompt": "What is Holi?", "subdomains": [15]', "(json)", "malformed JSON"),
    "not_an_object": (b'["What is Holi?"]', "(json)", "expected a JSON object"),
    "missing_prompt": (b'{"question": "What is Holi?", "subdomains": [15]}', "prompt", "missing"),
    "empty_prompt": (b'{"prompt": "   ", "subdomains": [15]}', "prompt", "empty text"),
    "prompt_not_text": (b'{"prompt": 42, "subdomains": [15]}', "prompt", "expected text"),
    "unknown_class_id": (b'{"prompt": "What is Holi?", "subdomains": [99]}', "subdomains", "unknown class id 99"),
    "unknown_class_name": (b'{"prompt": "What is Holi?", "subdomains": ["Juggling"]}', "subdomains", "unknown class"),
    "duplicate_id": (b'{"id": "1", "prompt": "A?"}\n{"id": "1", "prompt": "B?"}', "id", "duplicate id"),
    "one_megabyte_prompt": (
        json.dumps({"prompt": "Why? " * 209_716, "subdomains": [15]}).encode(),
        "prompt",
        f"the limit is {MAX_TEXT_CHARS:,}",
    ),
}


@pytest.mark.parametrize("case", list(BAD_JSONL))
def test_bad_jsonl_record_names_file_line_and_field(tmp_path, case):
    bad_line, field, reason = BAD_JSONL[case]
    spec = bad_jsonl(tmp_path, bad_line)
    line = 3 if case == "duplicate_id" else 2
    with pytest.raises(InputError) as error:
        load_source(spec)
    assert (error.value.file, error.value.line, error.value.field) == (spec.path, line, field)
    assert reason in error.value.reason
    assert str(error.value).startswith(f"{spec.path}:{line}: field '{field}': ")

    spec.on_error = "skip"
    result = load_source(spec)
    assert result.skipped == [{"file": spec.path, "line": line, "field": field, "reason": error.value.reason}]
    assert len(result.rows) == (3 if case == "duplicate_id" else 2)  # every good record kept


def test_csv_bad_records_are_named_or_counted(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(
        b"prompt,subdomains\r\n"
        b'"What is a Polish wycinanki?",12\r\n'
        b'"Caf\x00 etiquette in Paris?",11\r\n'  # NUL
        b'"",15\r\n'
        b'"A question\r\nover two lines?",3\r\n'
        b'"What is Fasnacht?",77\r\n'
        b'"What is the Hmong New Year?"\r\n'  # short row: one field where the header has two
        b'"Unclosed quote about Diwali?,15\r\n'  # swallows the next line's first field, then fails there
        b'"What is Carnival?",15\r\n'  # read again after the bad record: kept
    )
    with pytest.raises(InputError, match=r"bad\.csv:3: field 'prompt': control character U\+0000 at character 4"):
        load_source(SourceSpec("csv", str(path)))
    result = load_source(SourceSpec("csv", str(path), on_error="skip"))
    assert [(s["line"], s["field"]) for s in result.skipped] == [
        (3, "prompt"), (4, "prompt"), (7, "subdomains"), (8, "(csv)"), (9, "(csv)")
    ]  # fmt: skip
    assert result.skipped[3]["reason"] == "1 field; the header has 2"
    assert result.skipped[4]["reason"] == (
        "malformed quoting on line 10 (',' expected after '\"'): a quote opened on line 9 swallows the lines after it"
    )
    assert summary(result.rows) == [
        ("csv:bad.csv:2", "What is a Polish wycinanki?", [12]),
        ("csv:bad.csv:5", "A question\r\nover two lines?", [3]),
        ("csv:bad.csv:10", "What is Carnival?", [15]),
    ]
    assert result.sources == [{"source": "csv:bad.csv", "format": "csv", "path": str(path), "encoding": "utf-8",
                               "rows": 3, "skipped": 5}]  # fmt: skip


def test_missing_or_renamed_columns_always_raise(tmp_path):
    line = b'"Q?",11,d,h,a,o,1,"1,1,1",,,,'
    renamed = release_file(tmp_path / "r.csv", [line], RELEASE_HEADER.replace("Question", "question"))
    with pytest.raises(InputError, match=r"r\.csv:1: field 'prompt': column 'Question' not found"):
        load_source(SourceSpec("culturax_release", str(renamed), on_error="skip"))
    short_header = "Question,class,domain,helpful_response,harmless_response"
    no_honest = release_file(tmp_path / "h.csv", [b'"Q?",11,d,h,a'], short_header)
    with pytest.raises(InputError, match=r"h\.csv:1: field 'responses': column 'honest_response' not found"):
        load_source(SourceSpec("culturax_release", str(no_honest)))
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Q?"}])
    import datasets

    datasets.Dataset.from_list([{"text": "Q?"}]).to_parquet(str(tmp_path / "p.parquet"))
    with pytest.raises(InputError, match=r"p\.parquet:0: field 'prompt': column 'prompt' not found"):
        load_source(SourceSpec("parquet", str(tmp_path / "p.parquet")))
    with pytest.raises(InputError, match=r"p\.jsonl:1: field 'subdomains': missing \(no 'label'"):
        load_source(SourceSpec("jsonl", str(path), columns={"subdomains": "label"}))  # a mapped column is required


def test_release_bad_classes_and_a_byte_no_encoding_has(tmp_path):
    lines = [
        b'"Good question about batik?",12,d,h,a,o,1,"1,1,1",,,,',
        b'"Which class?",,d,h,a,o,1,"1,1,1",,,,',
        b'"Which class now?",fifteen,d,h,a,o,1,"1,1,1",,,,',
    ]
    result = load_source(SourceSpec("culturax_release", str(release_file(tmp_path / "r.csv", lines)), on_error="skip"))
    assert [(s["line"], s["field"], s["reason"]) for s in result.skipped] == [
        (3, "subdomains", "empty class label"),
        (4, "subdomains", "unknown class name 'fifteen'"),
    ]
    assert [row["prompt"] for row in result.rows] == ["Good question about batik?"]
    # 0x81 is undefined in Windows-1252 and invalid in UTF-8: one error for the whole file, even in skip mode.
    path = release_file(tmp_path / "b.csv", [*lines, b'"Bad byte \x81 here?",12,d,h,a,o,1,"1,1,1",,,,'])
    with pytest.raises(InputError) as error:
        load_source(SourceSpec("culturax_release", str(path), on_error="skip"))
    assert str(error.value) == (
        f"{path}:5: field '(encoding)': neither UTF-8 (byte 0x81 on line 5 is invalid) nor cp1252 (byte 0x81 is "
        "undefined); re-save the file as UTF-8"
    )


def test_bad_spec_values_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown source format 'xlsx'"):
        load_source(SourceSpec("xlsx", "f.xlsx"))
    with pytest.raises(ValueError, match="on_error"):
        load_source(SourceSpec("seed", on_error="ignore"))
    with pytest.raises(ValueError, match="encoding must be one of"):
        load_source(SourceSpec("seed", encoding="latin-1"))
    with pytest.raises(ValueError, match="unknown column mapping keys"):
        load_source(SourceSpec("jsonl", str(SEED_PATH), columns={"question": "q"}))
