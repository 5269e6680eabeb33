"""Mojibake: UTF-8 text that was decoded as cp1252 (or latin-1) before it reached us, e.g. ``Ã©`` for ``é``.

Reading UTF-8 as cp1252 turns every non-ASCII character into two or three characters: a lead (``Ã`` for Latin-1
letters, ``Ä``/``Å``/``Æ`` for Latin Extended: Polish, Turkish, Vietnamese ``ư``; ``Ð``/``Ñ`` for Cyrillic; ``â€``
for punctuation such as ``’``; ``á»``/``áº`` for Vietnamese letters; ``ï»¿`` for a byte-order mark) followed by
what the continuation bytes 0x80-0xBF look like in cp1252. (Read as latin-1, the continuation bytes 0x80-0x9F become
control characters, which the text checks refuse on their own.)

Real text holds some of those pairs too: ``Ã``, ``Â``, ``Ä``, ``Å``, ``Ñ`` are letters in Portuguese, French,
Vietnamese, German, Swedish and Spanish, and an upper-case word may end in one right before a dash, a closing quote,
an ellipsis or a no-break space (``CRISTÃ—MUÇULMANA``). So a lead followed by such punctuation is mojibake only when
nothing else in the text was decoded right: a text that also holds a non-ASCII letter outside every such pair (the
``Ç`` there; a mis-decoded text has none) is real text. A lead followed by any other continuation character (``Ã©``,
``Ã¼``, ``Å‚``, ``Ä±``, ``â€™``) never occurs in real text and is always mojibake. ``Â`` before cp1252's
0x80-0x9F characters is never mojibake (it would stand for a C1 control character).
"""

import re

_CONTINUATION = bytes(range(0x80, 0xC0)).decode("cp1252", errors="ignore")  # the 5 undefined bytes left out
# What can follow a word's last letter in real text: dashes, closing quotes, ellipsis, bullet, guillemets, NBSP.
_PUNCTUATION = "‘’“”•–—…‹›«»\u00a0·¡¿"
_SYMBOLS = "".join(c for c in _CONTINUATION if c not in _PUNCTUATION)
_UPPER_HALF = bytes(range(0xA0, 0xC0)).decode("cp1252")  # continuation bytes that are not cp1252's own 0x80-0x9F
_ALWAYS = re.compile(
    f"[ÃÄÅÆÐÑ][{re.escape(_SYMBOLS)}]"
    f"|Â[{re.escape(''.join(c for c in _UPPER_HALF if c in _SYMBOLS))}]"
    f"|â€[{re.escape(_CONTINUATION)}]|á[º»][{re.escape(_CONTINUATION)}]|ï»¿"
)
_UNLESS_DECODED = re.compile(
    f"[ÃÄÅÆÐÑ][{re.escape(_PUNCTUATION)}]|Â[{re.escape(''.join(c for c in _UPPER_HALF if c in _PUNCTUATION))}]"
)


def find_mojibake(text: str) -> re.Match | None:
    """The first mojibake sequence in ``text`` (a match: ``group()``, ``start()``), or None (module docstring)."""
    always = _ALWAYS.search(text)
    unless = list(_UNLESS_DECODED.finditer(text))
    if unless and _has_decoded_letter(text, [m.span() for m in (*unless, *_ALWAYS.finditer(text))]):
        unless = []
    found = [m for m in (always, *unless[:1]) if m is not None]
    return min(found, key=lambda m: m.start()) if found else None


def _has_decoded_letter(text: str, spans: list[tuple[int, int]]) -> bool:
    """A non-ASCII letter outside every lead + continuation pair: text that was decoded with the right encoding."""
    inside = {i for start, end in spans for i in range(start, end)}
    return any(ord(c) > 0x7F and c.isalpha() and i not in inside for i, c in enumerate(text))
