"""The prose fallback (judge mode "generative", for servers without structured output): a judge's reply -> the one
verdict option it states, or None (a failed attempt: retried, then counted). What it cannot read is None, never
another option; judges that can answer as data use mode "structured" (eval/hhh/structured.py) instead.

Where the verdict is read, in this order:
1. A JSON object in the reply (bare, in prose or in a code fence) with a verdict key ("verdict", "winner",
   "better_answer", "label", ...): its value, and nothing else in the reply.
2. Verdict markers: "Verdict:" (any case, markdown around it, "My verdict is X", "Verdict — X", a heading "## Verdict"
   with the verdict on the next line, "Better answer:", "Winner:", "Decision:", "Judgement:", "Conclusion:" and the
   word for verdict in other languages: "Veredicto:", "Urteil:", "Verdetto:", "Вердикт:", "判定：", ...), plus Arena
   notation anywhere ("[[A>B]]", "[[B>>A]]", "[[A=B]]", "[[B]]"). A marker marked final ("Final verdict", "Veredicto
   final", "最终判决", Arena brackets) concludes the reply: the last final one wins. Otherwise every marker that names
   an option must agree ("Verdict: A ... Verdict: B" is None).
3. No marker at all: the first line, when it is the verdict itself ("B", "**unsafe**", "Yes, the answer is true", "B
   is better"), not a sentence about an answer ("Answer A, although detailed, contains ...", "A: correct but
   verbose").

At a verdict position, after fillers ("the", "option", "Assistant", "Answer", ...): an option, a comparison of the two
pairwise options ("A > B", "B>>A", "A = B" a tie), or an option with "is better" / "wins". What follows the option is
a reason and never unmakes it ("Verdict: no, the answer is not truthful" is "no"). The position fails (None) when it
holds no option, "N/A", a negated option ("not unsafe"), a hedge ("probably safe"), a question ("safe for most
readers?"), two options ("A or B", "S, D"), or an option that is the subject of a sentence ("A is weaker, so B").
Reasoning that never closed (``<think>`` without ``</think>``) states no verdict. Options match as whole words,
case-insensitively ("unsafe" is not "safe", "N/A" is not "N", "E.g." is not "E").
"""

import re

from core.llm.structured import json_objects

MARKER_WORDS = (
    r"verdict|better (?:answer|response|output)|best (?:answer|response)|winner|decision|judge?ment|conclusion"
    r"|final answer|preferred (?:answer|response)|classification|label"
    r"|veredicto|veredito|verdetto|urteil|oordeel|werdykt|вердикт|решение|karar|kết luận|keputusan|putusan|निर्णय"
)
CJK_MARKERS = r"判决|判決|判定|裁定|结论|結論|評決|判断|판정|판결|결론"
MARKER = re.compile(
    rf"(?:(?<![^\W_])(?:{MARKER_WORDS})(?![^\W_])|{CJK_MARKERS})(?P<after>\s+(?:final|finale|finala))?[\s*_#`]*"
    r"(?:[:：=—–-]|\b(?:is|es|est|ist|è|é)\b|$)",
    re.IGNORECASE | re.MULTILINE,
)
FINAL = re.compile(r"\b(?:final|finale|endgültige?[sr]?|overall)\b|最终|最終|최종|окончательн|итогов", re.IGNORECASE)
ARENA = re.compile(r"\[\[([^\[\]\n]{1,24})\]\]")
COMPARISON = re.compile(r"\b([AB])\s*(>>|>|=|<<|<|≫|≪)\s*(?:(?:assistant|answer|response|output)\s+)?([AB])\b", re.I)
VERDICT_KEYS = {
    "verdict", "final_verdict", "winner", "better", "better_answer", "better_response", "preferred", "decision",
    "judgment", "judgement", "label", "answer", "classification", "result", "choice",
}  # fmt: skip
# Words: "N/A" as one token, letters/digits with inner apostrophes, hyphens and dotted abbreviations ("E.g");
# punctuation that ends the verdict position: sentence and clause marks, brackets, dashes (a hyphen between spaces).
TOKEN = re.compile(
    r"n/a\b|[^\W_](?:[\w'’-]*[^\W_])?(?:\.[^\W_]+)*|[,.;:!?()\[\]{}/&+—–，。；：！？（）]|(?<=\s)-(?=\s)", re.IGNORECASE
)
FULL_WIDTH = {"，": ",", "。": ".", "；": ";", "：": ":", "！": "!", "？": "?", "（": "(", "）": ")"}
PUNCTUATION = set(",.;:!?()[]{}/&+—–-")
SENTENCE_END = set(".!;—–-)]}")
NEGATIONS = {"not", "no", "neither", "nor", "none", "cannot", "can't", "cant", "unable", "isn't", "n/a", "never"}
HEDGES = {
    "probably", "possibly", "maybe", "perhaps", "likely", "unlikely", "mostly", "partly", "partially", "somewhat",
    "arguably", "borderline", "leaning", "unclear", "uncertain", "unsure", "depends", "depending", "mixed",
}  # fmt: skip
# Words that may stand before the option in the verdict position ("It's a tie", "Option B", "Assistant A").
NOUNS = {"option", "answer", "response", "output", "assistant", "model", "candidate", "label", "choice"}
LEAD_FILLER = {"it's", "it", "is", "its", "a", "an", "the", "final", "my", "clearly", "definitely"} | NOUNS
# Words that may start the reason right after the option without punctuation ("safe because ...", "yes it is ...").
REASON_STARTS = {
    "because", "since", "as", "given", "due", "so", "but", "while", "though", "although", "which", "with", "for",
    "it", "it's", "this", "that", "the", "there", "they", "its", "here", "overall", "per",
    "porque", "weil", "denn", "perché", "parce", "car", "потому", "так",
}  # fmt: skip
LIST_JOINS = {"and", "or", "nor", "vs", "versus", "/", "&", "+"}
BETTER = {"better", "superior", "stronger", "preferable", "preferred", "winner", "best", "wins"}
MORE_OF = {"helpful", "accurate", "complete", "correct", "useful", "relevant", "informative", "thorough"}
WORSE = {"worse", "weaker", "inferior", "less", "loses", "worst", "poorer"}
DEGREES = {"the", "clearly", "slightly", "significantly", "much", "far", "somewhat", "a", "bit", "overall"}
TIE_WORDS = ("draw", "tied", "equal")  # say "tie" where the options have one
NO_OPTION = ""  # the position names no option at all ("Both answers are fine", "based on the references")


def _words(line: str) -> list[str]:
    return [FULL_WIDTH.get(token, token) for token in TOKEN.findall(line)]


def _vocabulary(options: list[str]) -> dict[str, str]:
    by_word = {o.lower(): o for o in options}
    if "tie" in by_word:
        by_word.update({word: by_word["tie"] for word in TIE_WORDS})
    return by_word


def _comparison(line: str, by_word: dict[str, str]) -> str | None:
    """A pairwise comparison opening the position ("A > B", "[[B>>A]]", "Assistant A = Assistant B"): the better
    option, "tie" for "=", None when the line does not open with one (or the options have no A and B)."""
    match = COMPARISON.match(re.sub(r"^[\W_]*(?:(?:assistant|answer|response|output)\s+)?", "", line, flags=re.I))
    if not match or not {"a", "b"} <= set(by_word):
        return None
    first, relation, second = match.group(1).upper(), match.group(2), match.group(3).upper()
    if first == second:
        return NO_OPTION
    if relation == "=":
        return by_word.get("tie", NO_OPTION)
    return by_word[(first if relation in (">", ">>", "≫") else second).lower()]


def _read_position(line: str, by_word: dict[str, str], strict: bool = False) -> str | None:
    """The option the verdict position ``line`` states; NO_OPTION when it names none; None when it fails (negated,
    hedged, a question, two options, or an option that is the subject of a sentence). ``strict``: the first line of a
    reply without a marker, which must be the verdict itself."""
    compared = _comparison(line, by_word)
    if compared is not None:
        return compared
    tokens = _words(line)
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
            as_noun = strict and k > start and tokens[k - 1].lower() in NOUNS
            return option if _reason_is_no_second_verdict(tokens[k + 1 :], option, by_word, strict, as_noun) else None
        if lowered in NEGATIONS or lowered in HEDGES:
            return None
        if lowered not in LEAD_FILLER:
            return NO_OPTION
    return NO_OPTION


def _article(word: str, following: str | None, by_word: dict[str, str]) -> bool:
    """ "a"/"A" as the article ("a tie", "a clear win", "A tie"), not option A ("a, because", "A or B", "a since")."""
    if following is None or following in PUNCTUATION or following in REASON_STARTS | LIST_JOINS | {"is", "wins"}:
        return False
    return word == "a" or following in by_word


def _comparative(rest: list[str]) -> bool | None:
    """After the option: "is (clearly) better", "is the stronger one", "wins" -> True; "is worse" -> False; None when
    the words are no comparison."""
    words = [w.lower() for w in rest[:5]]
    if words[:1] == ["wins"]:
        return True
    if not words or words[0] not in ("is", "was"):
        return None
    for k in range(1, len(words)):
        word, following = words[k], words[k + 1] if k + 1 < len(words) else ""
        if word in BETTER or (word == "more" and following in MORE_OF):  # "more verbose" is no praise
            return True
        if word in WORSE:
            return False
        if word not in DEGREES:
            return None
    return None


def _reason_is_no_second_verdict(
    rest: list[str], option: str, by_word: dict[str, str], strict: bool = False, as_noun: bool = False
) -> bool:
    """What follows the option: a reason (fine, whatever it says), or a hedge ("safe?", "safe, probably"), a question,
    a second option joined to it ("A or B", "S, D and E") or more of a sentence whose subject the option is ("A is
    weaker"). In a reply without a marker, "A:" labels an answer and "Answer A, although ..." describes one."""
    if not rest:
        return True
    head, lowered = rest[0], rest[0].lower()
    if _in_question(rest):
        return False
    comparative = _comparative(rest)
    if comparative is not None:
        return comparative
    if as_noun:  # "Answer A" opening a reply: a verdict only when nothing but a sentence end follows
        return head in SENTENCE_END
    if head == "?" or lowered in HEDGES or (strict and head == ":"):
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


def _in_question(rest: list[str]) -> bool:
    """The option's sentence ends with a question mark ("safe for most readers? No: ...")."""
    for token in rest:
        if token in (".", "!", ";", "—", "–", ":", "(", ")"):
            return False
        if token == "?":
            return True
    return False


def _clause(tokens: list[str]) -> list[str]:
    """Words up to the next punctuation mark."""
    words = []
    for token in tokens:
        if token in PUNCTUATION:
            break
        words.append(token)
    return words


def _agreed(readings: list[str | None]) -> str | None:
    """The option every reading that names one states; None when they differ or one failed."""
    named = {r for r in readings if r != NO_OPTION}
    return named.pop() if len(named) == 1 and None not in named else None


def _json_readings(text: str, by_word: dict[str, str]) -> list[str | None]:
    """Readings of the verdict keys of every JSON object in the reply."""
    readings = []
    for obj, _, _ in json_objects(text):
        for key, value in obj.items():
            if str(key).strip().lower() in VERDICT_KEYS and isinstance(value, str):
                readings.append(_read_position(value, by_word))
    return readings


def _marker_readings(text: str, by_word: dict[str, str]) -> list[tuple[int, str | None, bool]]:
    """(position, reading, final) of every verdict marker and Arena bracket, in reply order."""
    readings = []
    for marker in MARKER.finditer(text):
        rest = text[marker.end() :]
        line = rest.split("\n", 1)[0]
        if not _words(line) and not _comparison(line, by_word):  # "## Verdict" alone: the verdict is on the next line
            line = next((candidate for candidate in rest.split("\n") if _words(candidate)), "")
        line_start = text.rfind("\n", 0, marker.start()) + 1
        final = bool(marker.group("after")) or bool(FINAL.search(text[line_start : marker.start()]))
        readings.append((marker.start(), _read_position(line, by_word), final))
    for bracket in ARENA.finditer(text):
        readings.append((bracket.start(), _read_position(bracket.group(1), by_word), True))
    return sorted(readings, key=lambda reading: reading[0])


def parse_verdict(text: str, options: list[str]) -> str | None:
    """The one option the reply states as its verdict, or None (a failed attempt): never a guess (module docstring)."""
    if "<think>" in text and "</think>" not in text:
        return None
    text = text.split("</think>")[-1]
    by_word = _vocabulary(options)
    from_json = _json_readings(text, by_word)
    if from_json:
        return _agreed(from_json) or None
    readings = _marker_readings(text, by_word)
    if not readings:
        first_line = next((line for line in text.strip().split("\n") if line.strip()), "")
        return _read_position(first_line, by_word, strict=True) or None
    finals = [reading for _, reading, final in readings if final and reading != NO_OPTION]
    if finals:  # the concluding marker wins
        return finals[-1] or None
    return _agreed([reading for _, reading, _ in readings]) or None
