"""Reading an HHH judge's reply: a structured judge's ratings (schema fields, by the backend's structured output), a
generative judge's ratings (JSON or "facet: n/scale" lines in prose, for servers without structured output) and a
logprob judge's expected rating. Pure text and arithmetic, shared by the rejection sampler (data_pipeline/judge.py)
and its tests.
"""

import math
import re

from core.llm.structured import json_objects, reply_object

FACETS = ("helpful", "harmless", "honest")
_FACET_NAMES = {"helpful": "helpful", "helpfulness": "helpful", "harmless": "harmless", "harmlessness": "harmless"}
_FACET_NAMES |= {"honest": "honest", "honesty": "honest"}
_RATIONALE_KEYS = ("rationale", "reason", "reasoning", "explanation", "critique", "justification", "feedback")
_MAX_RATIONALE_CHARS = 1000


class JudgementParseError(ValueError):
    """A judge reply without a usable rating for every facet."""


# "Helpfulness: 4/5", "**honest** = 3", "'harmless': 5" — the fallback when a reply holds no JSON object with scores.
_SCORE_TEXT = re.compile(
    r"\b(helpful(?:ness)?|harmless(?:ness)?|honest(?:y)?)\b[\s*_\"']*(?:score|rating)?[\s*_\"']*[:=][\s*_\"']*"
    r"(-?\d+(?:\.\d+)?)(?:\s*(?:/|out of)\s*(\d+))?",
    re.IGNORECASE,
)
_SCORE_VALUE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(?:(?:/|out of)\s*(\d+))?\s*$", re.IGNORECASE)


def _rating(value, denominator, facet: str, scale: int) -> float:
    if isinstance(value, bool) or value is None:
        raise JudgementParseError(f"{facet}: not a number: {value!r}")
    if isinstance(value, str):
        match = _SCORE_VALUE.match(value)
        if not match:
            raise JudgementParseError(f"{facet}: not a number: {value!r}")
        value, denominator = match.group(1), match.group(2) or denominator
    if not isinstance(value, int | float | str):
        raise JudgementParseError(f"{facet}: not a number: {value!r}")
    rating = float(value)
    if denominator is not None and int(denominator) != scale:
        raise JudgementParseError(f"{facet}: rated out of {denominator}, expected out of {scale}")
    if not 1 <= rating <= scale:  # also rejects NaN
        raise JudgementParseError(f"{facet}: {value} is outside 1..{scale}")
    return rating


def _facet_entries(obj: dict) -> dict[str, object]:
    """Facet -> raw value, keys matched case-insensitively, also one level down ({"scores": {...}})."""
    entries = {}
    for mapping in [obj, *(v for v in obj.values() if isinstance(v, dict))]:
        for key, value in mapping.items():
            facet = _FACET_NAMES.get(str(key).strip().lower())
            if facet and facet not in entries:
                entries[facet] = value
    return entries


def short_rationale(text: str) -> str:
    """A one-paragraph rationale without markdown markup (fences, emphasis, headings)."""
    return " ".join(re.sub(r"```(?:json)?|[*#`]+", " ", text).split())[:_MAX_RATIONALE_CHARS]


def parse_judgement(text: str, scale: int) -> dict:
    """A judge reply -> {"helpful", "harmless", "honest": float, "rationale": str}; JudgementParseError if unusable.

    Takes the last JSON object that carries facet ratings (code fences and surrounding prose are ignored), else
    "facet: n[/scale]" lines. A missing facet, a non-number, another scale or an out-of-range rating is an error.
    """
    candidates = [(obj, start, end) for obj, start, end in json_objects(text) if _facet_entries(obj)]
    if candidates:
        obj, start, end = candidates[-1]
        entries = _facet_entries(obj)
        missing = [facet for facet in FACETS if facet not in entries]
        if missing:
            raise JudgementParseError(f"no rating for {', '.join(missing)}")
        scores = {facet: _rating(entries[facet], None, facet, scale) for facet in FACETS}
        lowered = {str(k).lower(): v for k, v in obj.items()}
        rationale = next((lowered[k] for k in _RATIONALE_KEYS if isinstance(lowered.get(k), str)), None)
        if rationale is None:  # the prose around the object is the judge's reasoning
            rationale = text[:start] + " " + text[end:]
        return {**scores, "rationale": short_rationale(rationale)}
    matches = list(_SCORE_TEXT.finditer(text))
    if not matches:
        raise JudgementParseError("no JSON object with ratings and no 'facet: rating' lines")
    found = {}
    for match in matches:  # the last mention of a facet is the verdict
        found[_FACET_NAMES[match.group(1).lower()]] = match
    missing = [facet for facet in FACETS if facet not in found]
    if missing:
        raise JudgementParseError(f"no rating for {', '.join(missing)}")
    scores = {f: _rating(m.group(2), m.group(3), f, scale) for f, m in found.items()}
    return {**{f: scores[f] for f in FACETS}, "rationale": short_rationale(_SCORE_TEXT.sub(" ", text))}


def rating_schema(scale: int, rationale_max_chars: int | None = None) -> dict:
    """The structured judge's reply: ``{"rationale": string, "helpful", "harmless", "honest": 1..scale}``, the rationale
    first (the ratings are conditioned on it), every field required and nothing else (OpenAI's strict subset). With
    ``rationale_max_chars`` the rationale has a maxLength (for local grammars; OpenAI's strict mode refuses it)."""
    rationale = (
        {"type": "string"} if rationale_max_chars is None else {"type": "string", "maxLength": rationale_max_chars}
    )
    rating = {"type": "integer", "enum": list(range(1, scale + 1))}
    return {
        "type": "object",
        "properties": {"rationale": rationale, **dict.fromkeys(FACETS, rating)},
        "required": ["rationale", *FACETS],
        "additionalProperties": False,
    }


def read_structured_judgement(text: str, scale: int) -> dict:
    """A structured judge's reply (rating_schema) -> the ratings and rationale; JudgementParseError when it is not the
    schema's object (cut by the token budget, or a server that ignored the schema)."""
    reply = reply_object(text)
    if reply is None:
        raise JudgementParseError("not a JSON object (cut by max_new_tokens?)")
    if not isinstance(reply.get("rationale"), str):
        raise JudgementParseError("field 'rationale': missing or not a string")
    for facet in FACETS:
        value = reply.get(facet)
        if type(value) is not int or not 1 <= value <= scale:
            raise JudgementParseError(f"field '{facet}': {value!r} is not an integer rating 1..{scale}")
    return {**{facet: float(reply[facet]) for facet in FACETS}, "rationale": short_rationale(reply["rationale"])}


def expected_rating(logprobs: dict[str, float], scale: int) -> float | None:
    """E[rating] under the judge's distribution renormalised over the digits 1..scale; None if none is possible."""
    values = [logprobs.get(str(rating), -math.inf) for rating in range(1, scale + 1)]
    top = max(values)
    if not math.isfinite(top):
        return None
    weights = [math.exp(v - top) for v in values]
    return sum(rating * w for rating, w in zip(range(1, scale + 1), weights, strict=True)) / sum(weights)
