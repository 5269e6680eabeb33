"""Every importer format against one corpus of damaged files that the tests write, table-driven.

Each format gets the same three records (Holi, Nowruz, Songkran) with one damage applied. A record-level damage
names file, line and field (or, with on_error=skip, is one counted skip and the other two rows stay); a file-level
damage (an encoding that cannot be told) is one error in both modes. The expected messages are exact.
"""

import csv
import io
import json
from pathlib import Path

import datasets
import pytest

from data_pipeline.importers import MAX_TEXT_CHARS, InputError, SourceSpec, load_source

FORMATS = ("seed", "jsonl", "csv", "culturax_release", "parquet", "hf")
TEXT_FORMATS = ("seed", "jsonl", "csv", "culturax_release")
RELEASE_HEADER = [
    "Question", "class", "domain", "helpful_response", "harmless_response", "honest_response", "simhash_id",
    "pass_hhh", "", "", "", "",
]  # fmt: skip


def records() -> list[dict]:
    return [
        {"prompt": "What is Holi?", "subdomains": 15, "responses": ["A spring festival.", "Ask first.", "True."]},
        {"prompt": "How is Nowruz celebrated?", "subdomains": 15, "responses": ["With haft-sin.", "Kindly.", "Yes."]},
        {"prompt": "What is Songkran?", "subdomains": 19, "responses": ["A water festival.", "Be gentle.", "Fact."]},
    ]


def first_line(fmt: str) -> int:
    """The line (or row) of the first record: CSV files have a header on line 1."""
    return 2 if fmt in ("csv", "culturax_release") else 1


def prompt_column(fmt: str) -> str:
    return "Question" if fmt == "culturax_release" else "prompt"


def response_column(fmt: str, k: int) -> str:
    return RELEASE_HEADER[3 + k] if fmt == "culturax_release" else "responses"


def text_of(fmt: str, rows: list[dict]) -> str:
    """The file's text for a text format (CRLF line ends for CSV, as spreadsheets write them)."""
    if fmt in ("seed", "jsonl"):
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    if fmt == "culturax_release":
        writer.writerow(RELEASE_HEADER)
        for row in rows:
            writer.writerow([row["prompt"], row["subdomains"], "Culture", *row["responses"], "1.4E+19", "1,1,1",
                             "", "", "", ""])  # fmt: skip
    else:
        writer.writerow(["prompt", "subdomains", "responses"])
        writer.writerows([row["prompt"], row["subdomains"], row["responses"][1]] for row in rows)
    return buffer.getvalue()


def write(fmt: str, directory: Path, rows: list[dict] | None = None, data: bytes | None = None, **spec) -> SourceSpec:
    """The damaged file for ``fmt``: from ``rows`` (any format) or raw ``data`` bytes (text formats)."""
    rows = records() if rows is None else rows
    if fmt in TEXT_FORMATS:
        path = directory / f"damaged.{'csv' if fmt in ('csv', 'culturax_release') else 'jsonl'}"
        path.write_bytes(data if data is not None else text_of(fmt, rows).encode("utf-8"))
    elif fmt == "parquet":
        path = directory / "damaged.parquet"
        datasets.Dataset.from_list(rows).to_parquet(str(path))
    else:
        path = directory / "damaged_hf"
        datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(path))
    return SourceSpec(fmt, str(path), **spec)


def damaged(field: str, value, k: int = 0):
    def apply(rows: list[dict]) -> list[dict]:
        if field == "responses":
            rows[1]["responses"][k] = value
        else:
            rows[1][field] = value
        return rows

    return apply


# case: (damage to the second record, field, reason for format fmt)
RECORD_DAMAGE = {
    "nul_in_prompt": (damaged("prompt", "What is\x00 Nowruz?"), "prompt",
                      lambda fmt: f"control character U+0000 at character 8 (column '{prompt_column(fmt)}')"),
    "bell_in_response": (damaged("responses", "Kind\x07ly.", 1), "responses",
                         lambda fmt: f"control character U+0007 at character 5 (column '{response_column(fmt, 1)}')"),
    "escape_in_prompt": (damaged("prompt", "\x1b[31mNowruz?"), "prompt",
                         lambda fmt: f"control character U+001B at character 1 (column '{prompt_column(fmt)}')"),
    "mojibake_in_prompt": (damaged("prompt", "Whatâ€™s Nowruz?"), "prompt",
                           lambda fmt: "mojibake 'â€™' at character 5: UTF-8 text that was read as cp1252 before it "
                                       f"was saved here; fix the source (column '{prompt_column(fmt)}')"),
    "mojibake_latin1_letter": (damaged("prompt", "Nowruz in TÃ©hÃ©ran?"), "prompt",
                               lambda fmt: "mojibake 'Ã©' at character 12: UTF-8 text that was read as cp1252 before "
                                           f"it was saved here; fix the source (column '{prompt_column(fmt)}')"),
    "empty_prompt": (damaged("prompt", "   "), "prompt", lambda fmt: "empty text"),
    "too_long_prompt": (damaged("prompt", "Why? " * 4_001), "prompt",
                        lambda fmt: f"20,004 characters; the limit is {MAX_TEXT_CHARS:,}"),
    "unknown_class": (damaged("subdomains", 99), "subdomains", lambda fmt: "unknown class id 99"),
}  # fmt: skip


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case", list(RECORD_DAMAGE))
def test_record_damage_is_named_or_counted_in_every_format(tmp_path, fmt, case):
    damage, field, reason = RECORD_DAMAGE[case]
    spec = write(fmt, tmp_path, damage(records()))
    line = first_line(fmt) + 1
    with pytest.raises(InputError) as error:
        load_source(spec)
    assert str(error.value) == f"{spec.path}:{line}: field '{field}': {reason(fmt)}"
    spec.on_error = "skip"
    result = load_source(spec)
    assert result.skipped == [{"file": spec.path, "line": line, "field": field, "reason": reason(fmt)}]
    assert [row["prompt"] for row in result.rows] == ["What is Holi?", "What is Songkran?"]


def release_like(rows: list[dict], fmt: str, encoding: str) -> bytes:
    return text_of(fmt, rows).encode(encoding)


WITH_QUOTES = [dict(row) for row in records()]
WITH_QUOTES[0]["prompt"] = "What’s Holi in Mathura?"  # ’ is 0x92 in cp1252, E2 80 99 in UTF-8
WITH_QUOTES[1]["prompt"] = "Is Nowruz a café-and-family day?"  # é is 0xE9 in cp1252, C3 A9 in UTF-8


@pytest.mark.parametrize("fmt", TEXT_FORMATS)
def test_encodings_are_detected_and_recorded(tmp_path, fmt):
    expected = ["What’s Holi in Mathura?", "Is Nowruz a café-and-family day?", "What is Songkran?"]
    for encoding, data in (
        ("utf-8", release_like(WITH_QUOTES, fmt, "utf-8")),
        ("utf-8-sig", b"\xef\xbb\xbf" + release_like(WITH_QUOTES, fmt, "utf-8")),
        ("cp1252", release_like(WITH_QUOTES, fmt, "cp1252")),
    ):
        result = load_source(write(fmt, tmp_path, data=data))
        assert [row["prompt"] for row in result.rows] == expected, encoding
        assert result.sources[0]["encoding"] == encoding and result.skipped == []


@pytest.mark.parametrize("fmt", TEXT_FORMATS)
def test_undecodable_and_mixed_encodings_are_one_error_naming_line_and_suspect(tmp_path, fmt):
    first = first_line(fmt)
    utf8 = release_like(WITH_QUOTES, fmt, "utf-8")
    cp1252 = release_like(WITH_QUOTES, fmt, "cp1252")
    neither = utf8.replace(b"Songkran", b"Songkr\x81n")
    # Line 1 of the records in UTF-8 (’ as E2 80 99), line 2 in cp1252 (é as 0xE9): a file pasted together.
    lines_utf8, lines_cp1252 = utf8.split(b"\n"), cp1252.split(b"\n")
    mixed = b"\n".join([*lines_utf8[:first], lines_cp1252[first], *lines_utf8[first + 1 :]])
    cases = [
        (neither, "auto", first + 2, "neither UTF-8 (byte 0x81 on line {l2} is invalid) nor cp1252 (byte 0x81 is "
                                     "undefined); re-save the file as UTF-8"),
        (mixed, "auto", first, "mixes UTF-8 and cp1252: byte 0xE9 on line {l1} is not UTF-8, but read as cp1252 "
                               "this line would hold mojibake 'â€™'; re-save the file in one encoding (UTF-8)"),
        (utf8, "cp1252", first, "decoding as cp1252 gives mojibake 'â€™'; suspected encoding: UTF-8 (the file is "
                                "valid UTF-8): use encoding auto or utf-8"),
        (cp1252, "utf-8", first, "byte 0x92 is not valid utf-8; suspected encoding: cp1252 (use encoding auto or "
                                 "cp1252)"),
        (b"\xef\xbb\xbf" + cp1252, "auto", first, "byte 0x92 is not valid utf-8-sig; suspected encoding: neither "
                                                  "UTF-8 nor cp1252"),
    ]  # fmt: skip
    for data, encoding, line, reason in cases:
        reason = reason.format(l1=first + 1, l2=first + 2)
        for on_error in ("raise", "skip"):  # the whole file is unreadable: skip mode raises too
            spec = write(fmt, tmp_path, data=data, encoding=encoding, on_error=on_error)
            with pytest.raises(InputError) as error:
                load_source(spec)
            assert str(error.value) == f"{spec.path}:{line}: field '(encoding)': {reason}", (encoding, on_error)


def csv_with(fmt: str, bad_line: bytes, at: int = 2) -> bytes:
    lines = release_like(records(), fmt, "utf-8").split(b"\r\n")
    lines[at] = bad_line
    return b"\r\n".join(lines)


# case: (replacement for the second record's line, [(line, reason)] skipped, prompts kept) for csv and the release
CSV_DAMAGE = {
    # In the release the next record's quoted "1,1,1" closes the quote mid-field; in the plain CSV nothing does.
    "unclosed_quote": (b'"How is Nowruz celebrated?,15,Kindly.', [(3, {
        "culturax_release": "malformed quoting on line 4 (',' expected after '\"'): a quote opened on line 3 swallows "
                            "the lines after it",
        "csv": "unterminated quote: the record runs from line 3 to the end of the file (line 4)"})],
        ["What is Holi?", "What is Songkran?"]),
    "stray_quote": (b'"How is "Nowruz" celebrated?",15,Kindly.', [(3, "malformed quoting (',' expected after '\"'): "
                    "a stray or unterminated quote")], ["What is Holi?", "What is Songkran?"]),
    "extra_field": (b'"How is Nowruz celebrated?",15,Kindly.,' + b",extra" * 9, [(3, "{n} fields; the header has "
                    "{header}")], ["What is Holi?", "What is Songkran?"]),
    "missing_fields": (b'"How is Nowruz celebrated?",15', [(3, "2 fields; the header has {header}")],
                       ["What is Holi?", "What is Songkran?"]),
}  # fmt: skip


@pytest.mark.parametrize("fmt", ["csv", "culturax_release"])
@pytest.mark.parametrize("case", list(CSV_DAMAGE))
def test_csv_quoting_and_field_counts_are_strict(tmp_path, fmt, case):
    bad_line, skips, kept = CSV_DAMAGE[case]
    header = 12 if fmt == "culturax_release" else 3
    n = len(next(csv.reader([bad_line.decode()])))
    skips = [(line, (reason[fmt] if isinstance(reason, dict) else reason).format(n=n, header=header))
             for line, reason in skips]  # fmt: skip
    spec = write(fmt, tmp_path, data=csv_with(fmt, bad_line))
    with pytest.raises(InputError) as error:
        load_source(spec)
    assert str(error.value) == f"{spec.path}:{skips[0][0]}: field '(csv)': {skips[0][1]}"
    spec.on_error = "skip"
    result = load_source(spec)
    assert [(s["line"], s["reason"]) for s in result.skipped] == skips
    assert [row["prompt"] for row in result.rows] == kept


@pytest.mark.parametrize("fmt", ["csv", "culturax_release"])
def test_a_quote_left_open_on_the_last_record_is_not_dropped_silently(tmp_path, fmt):
    lines = release_like(records(), fmt, "utf-8").rstrip(b"\r\n").split(b"\r\n")
    if fmt == "csv":
        lines[-1] = lines[-1].replace(b"What is Songkran?", b'"What is Songkran?')
    else:
        lines[-1] += b'"'  # the last (empty) field opens a quote
    spec = write(fmt, tmp_path, data=b"\r\n".join(lines) + b"\r\n", on_error="skip")
    result = load_source(spec)
    assert [(s["line"], s["reason"]) for s in result.skipped] == [
        (4, "unterminated quote: the record runs from line 4 to the end of the file (line 4)")
    ]
    assert [row["prompt"] for row in result.rows] == ["What is Holi?", "How is Nowruz celebrated?"]


@pytest.mark.parametrize("fmt", ["seed", "jsonl"])
def test_jsonl_lines_that_are_not_objects(tmp_path, fmt):
    lines = text_of(fmt, records()).splitlines()
    for bad, reason in (
        ('{"prompt": "How is Nowruz celebrated?"', "malformed JSON: Expecting ',' delimiter at column 39"),
        ('["How is Nowruz celebrated?"]', "expected a JSON object, got list"),
    ):
        data = "\n".join([lines[0], bad, lines[2]]).encode()
        spec = write(fmt, tmp_path, data=data, on_error="skip")
        result = load_source(spec)
        assert result.skipped == [{"file": spec.path, "line": 2, "field": "(json)", "reason": reason}]
        assert [row["prompt"] for row in result.rows] == ["What is Holi?", "What is Songkran?"]


@pytest.mark.parametrize("fmt", ["parquet", "hf"])
def test_table_formats_refuse_a_prompt_of_the_wrong_type(tmp_path, fmt):
    rows = [{"prompt": 1, "subdomains": 15}, {"prompt": 2, "subdomains": 15}]
    spec = write(fmt, tmp_path, rows, on_error="skip")
    result = load_source(spec)
    assert [(s["line"], s["reason"]) for s in result.skipped] == [(1, "expected text, got int"),
                                                                   (2, "expected text, got int")]  # fmt: skip
    assert result.sources[0]["encoding"] == "utf-8" and result.rows == []
