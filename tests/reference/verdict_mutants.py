"""Checks that every row of tests/test_verdict_shapes.py can fail: each must be read differently by the parser before
issue 25 (git 0b3184e) or by one of the deliberately broken parsers below. Not a test (pytest never collects it).

    .venv/bin/python -m tests.reference.verdict_mutants

Prints, per reply shape, its rows, how many state a verdict and how many the old parser read wrong (and how many of
those as another option), then every row no parser variant gets wrong (there should be none) and each variant's
kills. A row added to the shapes should be killed by some variant; if none, it tests nothing.
"""

import re
import subprocess
import types
from pathlib import Path

from tests.test_verdict_shapes import SHAPES

OLD_COMMIT = "0b3184e"  # the parser issue 25's table was measured on
SOURCE = (Path(__file__).parents[2] / "eval" / "hhh" / "verdicts.py").read_text(encoding="utf-8")


def load(name: str, source: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(source, name, "exec"), module.__dict__)  # noqa: S102 - our own source, edited below
    return module


def mutant(name: str, old: str, new: str) -> types.ModuleType:
    if old not in SOURCE:
        raise SystemExit(f"variant {name}: its edit no longer applies to eval/hhh/verdicts.py; update it")
    return load(name, SOURCE.replace(old, new))


def falling_back(parse, fallback):
    """``parse``, and ``fallback`` where it gives None."""
    return types.SimpleNamespace(parse_verdict=lambda text, options: parse(text, options) or fallback(text, options))


def option_words(text: str, options: list[str]) -> list[str]:
    words = re.findall(r"[\w/]+", text.split("</think>")[-1])
    return [option for word in words for option in options if word.lower() == option.lower()]


def prefix_after_verdict(text: str, options: list[str]) -> str | None:
    match = re.search(r"verdict\W*(\w+)", text, re.IGNORECASE)
    starts = [o for o in options if match and o.lower().startswith(match.group(1).lower())]
    return starts[0] if len(starts) == 1 else None


def variants() -> dict:
    old = subprocess.run(["git", "show", f"{OLD_COMMIT}:eval/hhh/verdicts.py"], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    new = load("new", SOURCE)
    return {
        "old parser": load("old", old),
        "first marker wins": mutant(
            "m",
            "    if finals:  # the concluding marker wins\n        return finals[-1] or None\n",
            "    named = [r for _, r, _ in readings if r != NO_OPTION]\n"
            "    if named:\n        return named[0] or None\n",
        ),  # fmt: skip
        "no JSON": mutant("m", "    from_json = _json_readings(text, by_word)\n", "    from_json = []\n"),
        "no comparisons": mutant("m", "    compared = _comparison(line, by_word)\n", "    compared = None\n"),
        "comparison reads its first letter": mutant(
            "m", 'by_word[(first if relation in (">", ">>", "≫") else second).lower()]', "by_word[first.lower()]"
        ),
        "no question check": mutant("m", "    if _in_question(rest):\n        return False\n", ""),
        "lenient first line": mutant("m", "by_word, strict=True) or None", "by_word) or None"),
        "first line is the option alone": mutant(
            "m",
            "            as_noun = strict and k > start and tokens[k - 1].lower() in NOUNS\n",
            "            if strict:\n                return option if all(t in PUNCTUATION for t in tokens[k + 1 :]) "
            "else None\n            as_noun = False\n",
        ),  # fmt: skip
        "English markers only": mutant(
            "m",
            '    r"|veredicto|veredito|verdetto|urteil|oordeel|werdykt|вердикт|решение|'
            'karar|kết luận|keputusan|putusan|निर्णय"\n',
            "",
        ),  # fmt: skip
        "the word verdict only": load(
            "m",
            SOURCE.replace(
                SOURCE[SOURCE.index("MARKER_WORDS = (") : SOURCE.index("CJK_MARKERS")], 'MARKER_WORDS = "verdict"\n'
            ),
        ),  # fmt: skip
        "markers start their line": mutant(
            "m", "(?:(?<![^\\W_])(?:{MARKER_WORDS})", "(?:^[ \\t*_#>-]*(?:{MARKER_WORDS})"
        ),
        "no space before the colon": mutant("m", "finala))?[\\s*_#`]*", "finala))?[*_#`]*"),
        "no heading on its own line": mutant(
            "m",
            '            line = next((candidate for candidate in rest.split("\\n") if _words(candidate)), "")\n',
            "            pass\n",
        ),  # fmt: skip
        "no arena brackets": mutant("m", "    for bracket in ARENA.finditer(text):\n", "    for bracket in []:\n"),
        "no comparatives": mutant("m", "    comparative = _comparative(rest)\n", "    comparative = None\n"),
        "no Assistant/Answer fillers": mutant("m", '"clearly", "definitely"} | NOUNS', '"clearly", "definitely"}'),
        "words split on spaces": mutant(
            "m", "    return [FULL_WIDTH.get(token, token) for token in TOKEN.findall(line)]", "    return line.split()"
        ),  # fmt: skip
        "guesses the first option": falling_back(new.parse_verdict, lambda text, options: options[0]),
        "option prefixes": falling_back(new.parse_verdict, prefix_after_verdict),
        "first line before markers": falling_back(
            lambda text, options: (
                new._read_position(
                    next((line for line in text.strip().split("\n") if line.strip()), ""),
                    new._vocabulary(options),
                    strict=True,
                )
                or None
            ),
            new.parse_verdict,
        ),  # fmt: skip
        "last option mentioned": types.SimpleNamespace(parse_verdict=lambda t, o: (option_words(t, o) or [None])[-1]),
        "first option mentioned": types.SimpleNamespace(parse_verdict=lambda t, o: (option_words(t, o) or [None])[0]),
    }


def main() -> None:
    parsers = variants()
    kills = dict.fromkeys(parsers, 0)
    unkilled = []
    print(f"{'shape':24s} rows verdict none old_wrong old_other_option")
    for shape, rows in SHAPES.items():
        old_wrong = old_other = 0
        for text, options, expected in rows:
            readings = {name: parser.parse_verdict(text, options) for name, parser in parsers.items()}
            for name, reading in readings.items():
                kills[name] += reading != expected
            old_wrong += readings["old parser"] != expected
            old_other += readings["old parser"] not in (None, expected)
            if all(reading == expected for reading in readings.values()):
                unkilled.append((shape, text))
        read = sum(expected is not None for _, _, expected in rows)
        print(f"{shape:24s} {len(rows):4d} {read:7d} {len(rows) - read:4d} {old_wrong:9d} {old_other:16d}")
    print(f"rows no variant reads wrong: {unkilled or 'none'}")
    print("kills per variant:", ", ".join(f"{name} {count}" for name, count in kills.items()))


if __name__ == "__main__":
    main()
