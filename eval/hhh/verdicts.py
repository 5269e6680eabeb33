"""A generative judge's reply -> the one verdict option it states, or None (a failed attempt: retried, then counted).

The verdict is read where the asked format puts it: right after "Verdict:" (any case, markdown around it, "My verdict
is X", "Final verdict - X", or on the next line when the marker stands alone), or, in a reply without that marker, at
the start of its first line (a judge told to "reply with only" an option). What follows the option there is a reason
and never unmakes it: "Verdict: no, the answer is not truthful" is "no", "Verdict: B. A is a list" is "B".

The verdict position fails (None) when it holds no option (a refusal, "unclear"), "N/A", a negated option ("not
unsafe"), a hedge ("probably safe", "safe?", "safe, probably"), two different options ("A or B", "S and D", "S, D"), or
an option that is the subject of a sentence rather than a verdict ("A is weaker, so B"). Several markers must agree.
Reasoning that never closed (``<think>`` without ``</think>``) states no verdict. Options match as whole words,
case-insensitively ("unsafe" is not "safe", "N/A" is not "N", "E.g." is not "E").
"""

import re

VERDICT_MARKER = re.compile(r"\bverdict\b[\s*_]*(?:[:=\-]|is\b)", re.IGNORECASE)
# Words: "N/A" as one token, letters/digits with inner apostrophes, hyphens and dotted abbreviations ("E.g");
# punctuation that ends the verdict position: sentence and clause marks, brackets, dashes (a hyphen between spaces).
TOKEN = re.compile(r"n/a\b|[^\W_](?:[\w'’-]*[^\W_])?(?:\.[^\W_]+)*|[,.;:!?()\[\]{}/&+—–]|(?<=\s)-(?=\s)", re.IGNORECASE)
PUNCTUATION = set(",.;:!?()[]{}/&+—–-")
NEGATIONS = {"not", "no", "neither", "nor", "none", "cannot", "can't", "cant", "unable", "isn't", "n/a", "never"}
HEDGES = {
    "probably", "possibly", "maybe", "perhaps", "likely", "unlikely", "mostly", "partly", "partially", "somewhat",
    "arguably", "borderline", "leaning", "unclear", "uncertain", "unsure", "depends", "depending", "mixed",
}  # fmt: skip
# Words that may stand before the option in the verdict position ("It's a tie", "Option B", "the answer is yes").
LEAD_FILLER = {"it's", "it", "is", "its", "a", "an", "the", "option", "answer", "response", "output", "label", "final"}
# Words that may start the reason right after the option without punctuation ("safe because ...", "yes it is ...").
REASON_STARTS = {
    "because", "since", "as", "given", "due", "so", "but", "while", "though", "although", "which", "with", "for",
    "it", "it's", "this", "that", "the", "there", "they", "its", "here", "overall", "per",
}  # fmt: skip
LIST_JOINS = {"and", "or", "nor", "vs", "versus", "/", "&", "+"}
NO_OPTION = ""  # the position names no option at all ("Both answers are fine", "based on the references")


def _words(line: str) -> list[str]:
    return TOKEN.findall(line)


def _read_position(tokens: list[str], by_word: dict[str, str]) -> str | None:
    """The option the verdict position states; NO_OPTION when it names none; None when it fails (negated, hedged, two
    options, or an option that is the subject of a sentence)."""
    start = 0
    while start < len(tokens) and tokens[start] in PUNCTUATION:  # "(A)", "[B]", "- unsafe"
        start += 1
    for k in range(start, len(tokens)):
        word, lowered = tokens[k], tokens[k].lower()
        following = tokens[k + 1].lower() if k + 1 < len(tokens) else None
        option = by_word.get(lowered)
        if lowered == "a" and _article(word, following, by_word):
            continue
        if option:
            return option if _reason_is_no_second_verdict(tokens[k + 1 :], option, by_word) else None
        if lowered in NEGATIONS or lowered in HEDGES:
            return None
        if lowered not in LEAD_FILLER:
            return NO_OPTION
    return NO_OPTION


def _article(word: str, following: str | None, by_word: dict[str, str]) -> bool:
    """ "a"/"A" as the article ("a tie", "a clear win", "A tie"), not option A ("a, because", "A or B", "a since")."""
    if following is None or following in PUNCTUATION or following in REASON_STARTS | LIST_JOINS:
        return False
    return word == "a" or following in by_word


def _reason_is_no_second_verdict(rest: list[str], option: str, by_word: dict[str, str]) -> bool:
    """What follows the option: a reason (fine, whatever it says), or a hedge ("safe?", "safe, probably"), a second
    option joined to it ("A or B", "S, D and E") or more of a sentence whose subject the option is ("A is weaker")."""
    if not rest:
        return True
    head, lowered = rest[0], rest[0].lower()
    if head == "?" or lowered in HEDGES:
        return False
    if lowered in LIST_JOINS:  # "safe or unsafe depending on context", "A/B": a second option
        return all(by_word.get(w.lower()) in (None, option) for w in _clause(rest[1:]))
    if head == ",":
        clause = [w for w in _clause(rest[1:]) if w.lower() not in ("a", "an", "the")]
        if clause and clause[0].lower() in HEDGES:
            return False
        listed = clause and by_word.get(clause[0].lower()) not in (None, option)
        ends_there = len(clause) == 1 or (len(clause) > 1 and clause[1].lower() in LIST_JOINS)
        return not (listed and ends_there)  # "S, D" lists two options; "B, A is a list" gives a reason
    return head in PUNCTUATION or lowered in REASON_STARTS


def _clause(tokens: list[str]) -> list[str]:
    """Words up to the next punctuation mark."""
    words = []
    for token in tokens:
        if token in PUNCTUATION:
            break
        words.append(token)
    return words


def parse_verdict(text: str, options: list[str]) -> str | None:
    """The one option the reply states as its verdict, or None (a failed attempt): never a guess (module docstring)."""
    if "<think>" in text and "</think>" not in text:
        return None
    text = text.split("</think>")[-1]
    by_word = {o.lower(): o for o in options}
    markers = list(VERDICT_MARKER.finditer(text))
    if not markers:
        first_line = text.strip().split("\n", 1)[0]
        return _read_position(_words(first_line), by_word) or None
    readings = []
    for marker in markers:
        rest = text[marker.end() :]
        line = rest.split("\n", 1)[0]
        if not _words(line):  # "**Verdict:**" alone on its line: the verdict is on the next non-empty line
            line = next((candidate for candidate in rest.split("\n") if _words(candidate)), "")
        readings.append(_read_position(_words(line), by_word))
    # The first marker holds the verdict; a later one may only repeat it or name no option ("this verdict is based on")
    later = {r for r in readings[1:] if r != NO_OPTION}
    return (readings[0] or None) if later <= {readings[0]} else None
