"""Reading records out of input files: encoding detection, strict CSV, JSON lines, and the checks every text passes.

Encodings. ``encoding: auto`` (the default) reads UTF-8 with a byte-order mark as ``utf-8-sig``, any other valid
UTF-8 as ``utf-8``, and a file that is not UTF-8 as ``cp1252`` (Windows-1252, the released CULTURAX file's
encoding), but only when every byte is defined in cp1252 and the decoded text holds no mojibake. Mojibake here means
the sequences UTF-8 text turns into when read as cp1252: ``Ã©`` for ``é``, ``â€™`` for ``’``, ``Ð¿`` for Cyrillic,
``ï»¿`` for a byte-order mark (data_pipeline/mojibake.py, which also tells them from real Portuguese, Vietnamese,
Turkish, Polish, French or German text). A file that is neither, or mixes the two, is one InputError naming the line
and the suspected encoding. A named encoding (``utf-8``, ``utf-8-sig``, ``cp1252``) is used as given, with the same
checks.

Text checks. Every imported text field is refused (InputError, or a counted skip) when it holds a control character
other than tab, newline and carriage return (NUL included), or a mojibake sequence: text that was decoded with the
wrong encoding before it reached this file (a UTF-8 file can hold ``Itâ€™s`` as valid UTF-8).

CSV. Parsed with ``strict=True``: a quote that never closes, or that closes in the middle of a field, is an error
naming the line where the record starts; so is a record whose number of fields differs from the header's.
"""

import csv
import io
import json
import re
from collections.abc import Iterator

from data_pipeline.mojibake import find_mojibake

ENCODINGS = ("auto", "utf-8", "utf-8-sig", "cp1252")
UTF8_BOM = b"\xef\xbb\xbf"

# The csv module refuses fields over 128 KiB with a bare csv.Error; raise the limit so an oversized prompt gets the
# same clear length error (importers.MAX_TEXT_CHARS) as in every other format.
csv.field_size_limit(2**31 - 1)
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # Unicode category Cc less tab, newline, CR


class InputError(ValueError):
    """A problem in an input file; the message reads "<file>:<line>: field '<field>': <what is wrong>"."""

    def __init__(self, file: str, line: int, field: str, reason: str):
        super().__init__(f"{file}:{line}: field '{field}': {reason}")
        self.file, self.line, self.field, self.reason = file, line, field, reason

    def as_skip(self) -> dict:
        return {"file": self.file, "line": self.line, "field": self.field, "reason": self.reason}


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be imported (a control character or mojibake), or None."""
    control = _CONTROL.search(text)
    if control:
        return f"control character U+{ord(control.group()):04X} at character {control.start() + 1}"
    mojibake = find_mojibake(text)
    if mojibake:
        return (f"mojibake {mojibake.group()!r} at character {mojibake.start() + 1}: UTF-8 text that was read as "
                "cp1252 before it was saved here; fix the source")  # fmt: skip
    return None


def _line_of(data: bytes | str, offset: int) -> int:
    return data.count(b"\n" if isinstance(data, bytes) else "\n", 0, offset) + 1


def decode(path: str, data: bytes, encoding: str = "auto") -> tuple[str, str]:
    """(text, encoding used) for a file's bytes; an InputError (field '(encoding)') when no encoding fits."""
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, not {encoding!r}")
    if encoding == "auto":
        if data.startswith(UTF8_BOM):
            return _decode_as(path, data, "utf-8-sig"), "utf-8-sig"
        try:
            return data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError as not_utf8:
            first = not_utf8.start
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError as error:
            reason = (f"neither UTF-8 (byte 0x{data[first]:02X} on line {_line_of(data, first)} is invalid) nor "
                      f"cp1252 (byte 0x{data[error.start]:02X} is undefined); re-save the file as UTF-8")  # fmt: skip
            raise InputError(path, _line_of(data, error.start), "(encoding)", reason) from None
        found = find_mojibake(text)
        if found:
            raise InputError(path, _line_of(text, found.start()), "(encoding)",
                             f"mixes UTF-8 and cp1252: byte 0x{data[first]:02X} on line {_line_of(data, first)} is "
                             f"not UTF-8, but read as cp1252 this line would hold mojibake {found.group()!r}; "
                             "re-save the file in one encoding (UTF-8)")  # fmt: skip
        return text, "cp1252"
    text = _decode_as(path, data, encoding)
    found = find_mojibake(text) if encoding == "cp1252" else None
    if found:
        utf8 = _is_utf8(data)
        raise InputError(path, _line_of(text, found.start()), "(encoding)",
                         f"decoding as cp1252 gives mojibake {found.group()!r}; suspected encoding: "
                         + ("UTF-8 (the file is valid UTF-8): use encoding auto or utf-8" if utf8 else
                            "a mix of UTF-8 and cp1252: re-save the file as UTF-8"))  # fmt: skip
    return text, encoding


def _decode_as(path: str, data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        at = error.start + (len(UTF8_BOM) if encoding == "utf-8-sig" and data.startswith(UTF8_BOM) else 0)
        if encoding.startswith("utf-8"):
            suspect = "cp1252 (use encoding auto or cp1252)" if _is_cp1252(data) else "neither UTF-8 nor cp1252"
        else:
            suspect = "UTF-8 (use encoding auto or utf-8)" if _is_utf8(data) else "neither UTF-8 nor cp1252"
        reason = f"byte 0x{data[at]:02X} is not valid {encoding}; suspected encoding: {suspect}"
        raise InputError(path, _line_of(data, at), "(encoding)", reason) from None


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _is_cp1252(data: bytes) -> bool:
    try:
        return find_mojibake(data.decode("cp1252")) is None
    except UnicodeDecodeError:
        return False


def jsonl_records(path: str, text: str) -> Iterator[tuple[int, dict] | InputError]:
    """(line, object) per non-blank line, or an InputError for a line that is not a JSON object."""
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.strip()
        if not line:
            continue  # blank lines separate nothing and hold no record
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            yield InputError(path, number, "(json)", f"malformed JSON: {e.msg} at column {e.colno}")
            continue
        if not isinstance(record, dict):
            yield InputError(path, number, "(json)", f"expected a JSON object, got {type(record).__name__}")
            continue
        yield number, record


def csv_header(path: str, text: str) -> tuple[list[str], Iterator[tuple[int, dict] | InputError]]:
    """The header and then (line where the record starts, {column: cell}) per record, or an InputError."""
    lines = io.StringIO(text, newline="").readlines()
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise InputError(path, 1, "(header)", "empty file: no header row") from None
    except csv.Error as e:
        raise InputError(path, 1, "(header)", f"malformed quoting in the header: {e}") from None
    return header, _csv_records(path, lines, reader.line_num, header)


def _csv_records(
    path: str, lines: list[str], offset: int, header: list[str]
) -> Iterator[tuple[int, dict] | InputError]:
    """Records after the first ``offset`` lines. After a quoting error, parsing starts again on the line after the
    bad record's first line, so one stray quote costs one record, not every record up to the next quote."""
    reader = csv.reader(lines[offset:], strict=True)
    start = offset + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            end = offset + reader.line_num
            if "unexpected end of data" in str(e):
                reason = f"unterminated quote: the record runs from line {start} to the end of the file (line {end})"
            elif end > start:
                reason = (f"malformed quoting on line {end} ({e}): a quote opened on line {start} swallows the "
                          "lines after it")  # fmt: skip
            else:
                reason = f"malformed quoting ({e}): a stray or unterminated quote"
            yield InputError(path, start, "(csv)", reason)
            offset = start
            reader = csv.reader(lines[offset:], strict=True)
            start = offset + 1
            continue
        if cells and len(cells) != len(header):
            fields = f"{len(cells)} field" + ("s" if len(cells) != 1 else "")
            yield InputError(path, start, "(csv)", f"{fields}; the header has {len(header)}")
        elif any(cells):
            yield start, dict(zip(header, cells, strict=True))
        start = offset + reader.line_num + 1
