"""Structured output: a reply that is a JSON object of a given schema, enforced by the backend, never parsed from prose.

How each backend enforces ``LLM.generate(..., json_schema=schema)``:
- openai: ``response_format`` ``{"type": "json_schema", "json_schema": {"name", "strict": true, "schema"}}`` (OpenAI's
  structured outputs; vLLM's OpenAI server compiles it into a grammar). OpenAI's strict mode takes a subset of JSON
  Schema: every property required, ``additionalProperties: false``, ``enum``, no ``maxLength``.
- vllm (in-process): ``SamplingParams(structured_outputs=StructuredOutputsParams(json=schema))``, with the engine's
  xgrammar backend writing compact JSON (no free whitespace a small model could loop on).
- transformers: xgrammar's logits processor for Hugging Face ``generate`` (``xgrammar.contrib.hf``; xgrammar is
  vLLM's own grammar library, pinned with it): the same compiled grammar, compact JSON, one matcher per row.

``maxLength`` on a string bounds it where the grammar runs here (transformers, vllm, vLLM's server), so a small model
closes the JSON within its token budget; OpenAI's strict mode refuses the keyword, so a schema meant for api.openai.com
leaves it out and bounds the reply with ``max_new_tokens`` alone.
"""

import json

from core.llm.base import canonical_json


def response_format(schema: dict, name: str = "reply") -> dict:
    """The chat-completions ``response_format`` that asks for ``schema`` strictly."""
    return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}}


def reply_object(text: str) -> dict | None:
    """The JSON object a structured reply is, or None (cut by the token budget, or not an object). A raw control
    character inside a string is accepted: xgrammar's string rule with ``maxLength`` lets one through (seen with
    tiny byte-level tokenizers), and it changes no field the reader uses."""
    try:
        value = json.loads(text, strict=False)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def json_objects(text: str) -> list[tuple[dict, int, int]]:
    """Every top-level JSON object in free text (inside code fences or prose), with its span: what prose fallbacks
    read when a backend cannot give the object as data."""
    decoder, found, position = json.JSONDecoder(), [], text.find("{")
    while position != -1:
        try:
            value, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            position = text.find("{", position + 1)
            continue
        if isinstance(value, dict):
            found.append((value, position, end))
        position = text.find("{", end)
    return found


class XGrammarConstraint:
    """Compiles JSON schemas for one Hugging Face tokenizer (once per schema) and hands out xgrammar's logits
    processor for a ``generate`` call (a processor serves one call only, as xgrammar documents)."""

    def __init__(self, tokenizer, vocab_size: int, stop_token_ids: list[int]):
        import xgrammar

        self._xgrammar = xgrammar
        info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=stop_token_ids)
        self._compiler = xgrammar.GrammarCompiler(info)
        self._compiled: dict[str, object] = {}

    def logits_processor(self, schema: dict):
        from xgrammar.contrib.hf import LogitsProcessor

        key = canonical_json(schema)
        if key not in self._compiled:
            self._compiled[key] = self._compiler.compile_json_schema(key, any_whitespace=False)
        return LogitsProcessor(self._compiled[key])
