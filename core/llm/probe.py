"""One small request that shows an endpoint can do what a judge needs: a JSON-schema reply (structured output) or
first-token log-probabilities. The preflight sends it once per endpoint, model and mode, so a server without the
feature fails by name before a run, not at judgement 4,000. It goes through the same backend code as the run (the
openai backend's response_format and logprobs requests), with few retries and a short deadline, cached nowhere.
"""

import dataclasses

from core.llm import LLMConfig, LLMRequestError, Sampling, build_llm
from core.llm.structured import reply_object

PROBE_MESSAGES = [{"role": "user", "content": "Preflight probe. Is 2 + 2 equal to 4? Answer yes or no."}]
PROBE_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}},
    "required": ["answer"],
    "additionalProperties": False,
}
PROBE_OPTIONS = ["yes", "no"]
MODES = ("structured", "logprobs")


def probe(cfg: LLMConfig, mode: str) -> tuple[str, str]:
    """(status, detail) of one ``mode`` request to ``cfg``'s endpoint: "ok", or "fail" with what the server did."""
    if mode not in MODES:
        raise ValueError(f"probe: mode {mode!r} not in {MODES}")
    quick = dataclasses.replace(cfg, max_retries=1, deadline_s=min(cfg.deadline_s, 30.0), max_concurrency=1)
    llm = build_llm(quick, None, role="preflight")
    try:
        if mode == "structured":
            (completion,) = llm.generate([PROBE_MESSAGES], Sampling(max_new_tokens=16), json_schema=PROBE_SCHEMA)[0]
            reply = reply_object(completion.text)
            if reply is None or reply.get("answer") not in PROBE_OPTIONS:
                replied = completion.text[:60]
                return (
                    "fail",
                    f"structured output: the server ignored the JSON schema (it replied {replied!r}); "
                    "use a server with structured outputs, or mode generative",
                )
            return "ok", f"structured output: answers a JSON schema ({completion.text.strip()})"
        (logprobs,) = llm.next_token_logprobs([PROBE_MESSAGES], PROBE_OPTIONS)
        return "ok", f"logprobs: first-token log-probabilities returned ({len(logprobs)} of 2 options in the top 20)"
    except LLMRequestError as err:
        return "fail", f"{mode} request failed: {err}"
    finally:
        llm.close()
