"""A judge's verdict as data: the JSON schema a ``structured`` judge answers and the reading of its reply.

The judge writes ``{"reason": "...", "verdict": "<option>"}``, reason first so the verdict is conditioned on it, through
the backend's structured output (core/llm/structured.py): the verdict is the enum value, never a word found in prose.
The reason is bounded, so even a small model closes the object within the token budget: by ``maxLength`` where the
grammar runs locally (transformers, vLLM; ``reason_max_chars``) and by ``max_new_tokens`` alone for OpenAI, whose
strict mode refuses ``maxLength``. A reply that is not such an object (cut by the token budget, a server that ignored
the schema) is a failed attempt: retried, then counted, never guessed.
"""

from core.llm.structured import reply_object

ANSWER_FORMAT = (
    'Reply with a JSON object {"reason": "<your reasoning, briefly>", "verdict": "<one of: %s>"}: first the reason, '
    "then the verdict."
)


def verdict_schema(options: list[str], reason_max_chars: int | None = None) -> dict:
    """``{"reason": string, "verdict": one of options}``, both required, nothing else (OpenAI's strict subset)."""
    reason = {"type": "string"} if reason_max_chars is None else {"type": "string", "maxLength": reason_max_chars}
    return {
        "type": "object",
        "properties": {"reason": reason, "verdict": {"type": "string", "enum": list(options)}},
        "required": ["reason", "verdict"],
        "additionalProperties": False,
    }


def read_verdict(text: str, options: list[str]) -> tuple[str | None, str | None]:
    """(verdict, reason) of a structured reply; (None, None) when it is not the schema's object."""
    reply = reply_object(text)
    if reply is None or not isinstance(reply.get("reason"), str) or reply.get("verdict") not in options:
        return None, None
    return reply["verdict"], reply["reason"]
