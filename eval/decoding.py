"""Reasoning models as their authors evaluate them: think blocks, per-family decoding presets, token split.

Think blocks. Two chat-template families are in use:
- DeepSeek-R1-Distill: the generation prompt already opens the block (``<｜Assistant｜><think>\\n``), so a response
  holds ``reasoning</think>answer`` and never the opening tag;
- Qwen3: the response itself writes ``<think>reasoning</think>answer`` in thinking mode; in non-thinking mode the
  template writes an empty, closed block into the prompt and the response is the answer alone.
A response is parsed into (thinking, answer, state) with state one of
- ``closed``: a ``</think>`` is present; the answer is the text after the last one (the Qwen3 card's parsing rule);
- ``unclosed``: the block was opened (by the response or by the prompt) and never closed, e.g. the response ran out
  of ``max_new_tokens`` while reasoning: there is **no final answer**; it is never judged (see eval/hhh/samples.py);
- ``absent``: no block at all and the prompt left none open: the whole text is the answer.
Whether the prompt opens the block is read from the model's own chat template (:func:`prompt_opens_think`).

Presets (:data:`PRESETS`) hold each family's published decoding, and ``paper`` the AlignCultura paper's evaluation
decoding for every model; :func:`resolve_decoding` gives a model its settings
from, in order, the model's own fields in the eval config, its named preset, and the run's defaults.
"""

import dataclasses
import functools
import logging
from dataclasses import dataclass

from core.chat_templates import PLAIN_PROMPT

log = logging.getLogger(__name__)

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
CLOSED, UNCLOSED, ABSENT = "closed", "unclosed", "absent"

# Decoding presets, with their sources (MinP=0 in the Qwen3 cards is no filter, which is what no min_p knob means).
PRESETS: dict[str, dict] = {
    # deepseek-ai/DeepSeek-R1-Distill-Qwen-7B generation_config.json (do_sample, temperature 0.6, top_p 0.95) and
    # model card "Usage Recommendations": T 0.5-0.7 (0.6 recommended; greedy gives endless repetition), no system
    # prompt (all instructions in the user turn). 8192 new tokens leave room to reason on open-ended prompts.
    "reasoning_r1": {"temperature": 0.6, "top_p": 0.95, "system_prompt": "", "max_new_tokens": 8192},
    # Qwen/Qwen3-8B model card "Best Practices", thinking mode: T 0.6, TopP 0.95, TopK 20 (also its
    # generation_config.json); "DO NOT use greedy decoding". Same token budget as the R1 preset so the two compare.
    "qwen3_thinking": {
        "temperature": 0.6,
        "top_p": 0.95,
        "top_k": 20,
        "max_new_tokens": 8192,
        "chat_template_kwargs": {"enable_thinking": True},
    },
    # Qwen/Qwen3-8B model card "Best Practices", non-thinking mode (enable_thinking=False): T 0.7, TopP 0.8, TopK 20.
    "qwen3_nonthinking": {
        "temperature": 0.7,
        "top_p": 0.8,
        "top_k": 20,
        "chat_template_kwargs": {"enable_thinking": False},
    },
    # Deterministic decoding for models without a published recommendation (and tiny stand-ins).
    "greedy": {"temperature": 0.0, "top_p": 1.0},
    # The AlignCultura paper's evaluation (gskgautam/AlignCultura README, commits 37f6ace and c0eabbd, "Stage II -
    # Evaluation"; still in 1d6495f): "averaged over 3 independent runs", temperature 0.7, top-p 0.9, max length 512,
    # repetition penalty 1.1. The three runs are three samples per prompt (metrics average them per prompt; the
    # report shows each run's score). No top-k: the authors state none.
    "paper": {
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": 0,
        "max_new_tokens": 512,
        "repetition_penalty": 1.1,
        "samples_per_prompt": 3,
    },
}
DECODING_FIELDS = (
    "temperature",
    "top_p",
    "top_k",
    "max_new_tokens",
    "system_prompt",
    "samples_per_prompt",
    "chat_template_kwargs",
    "repetition_penalty",
)


@dataclass(frozen=True)
class Decoding:
    """The decoding one evaluated model gets (resolved; what results.json records per model)."""

    preset: str | None
    temperature: float
    top_p: float
    top_k: int
    max_new_tokens: int
    system_prompt: str
    samples_per_prompt: int
    chat_template_kwargs: dict
    repetition_penalty: float = 1.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def differences(self, other: "Decoding") -> list[str]:
        """Fields (preset name aside) in which two models' decoding differ."""
        return [f for f in DECODING_FIELDS if getattr(self, f) != getattr(other, f)]


def resolve_decoding(cfg, spec) -> Decoding:
    """Per field: the model's own setting, else its preset's, else the run's default. Errors name the model."""
    where = f"config: models '{spec.name}'"
    if spec.preset is not None and spec.preset not in PRESETS:
        raise ValueError(f"{where}: preset '{spec.preset}' unknown; known: {sorted(PRESETS)}")
    preset = PRESETS.get(spec.preset, {})
    values = {}
    for name in DECODING_FIELDS:
        own = getattr(spec, name, None)
        values[name] = own if own is not None else preset.get(name, getattr(cfg, name))
    decoding = Decoding(preset=spec.preset, **values)
    if decoding.repetition_penalty <= 0:
        raise ValueError(f"{where}: repetition_penalty must be > 0 (1.0 = off), got {decoding.repetition_penalty}")
    if decoding.samples_per_prompt < 1:
        raise ValueError(f"{where}: samples_per_prompt must be >= 1, got {decoding.samples_per_prompt}")
    if decoding.samples_per_prompt > 1 and decoding.temperature == 0:
        raise ValueError(
            f"{where}: samples_per_prompt {decoding.samples_per_prompt} with greedy decoding (temperature 0) repeats "
            "one answer; sample (temperature > 0) or use samples_per_prompt 1"
        )
    return decoding


@dataclass(frozen=True)
class ThinkSplit:
    thinking: str  # reasoning text (without the tags)
    answer: str | None  # None: no final answer
    state: str  # closed | unclosed | absent
    thinking_segment: str  # the raw prefix of the response that is reasoning (tags included): what its tokens count


def split_think(text: str, prompt_opens_think: bool) -> ThinkSplit:
    """Split a response into reasoning and final answer (module docstring: the three states)."""
    if THINK_CLOSE in text:
        head, answer = text.rsplit(THINK_CLOSE, 1)
        thinking = head.split(THINK_OPEN, 1)[-1]
        return ThinkSplit(thinking.strip(), answer.strip(), CLOSED, head + THINK_CLOSE)
    if THINK_OPEN in text:
        return ThinkSplit(text.split(THINK_OPEN, 1)[1].strip(), None, UNCLOSED, text)
    if prompt_opens_think:
        return ThinkSplit(text.strip(), None, UNCLOSED, text)
    return ThinkSplit("", text.strip(), ABSENT, "")


def prompt_opens_think(tokenizer, chat_template_kwargs: dict) -> bool:
    """True if the model's generation prompt leaves a think block open (DeepSeek-R1-Distill's template does)."""
    probe = [{"role": "user", "content": "Hello"}]
    prompt = tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True, **chat_template_kwargs)
    return prompt.rfind(THINK_OPEN) > prompt.rfind(THINK_CLOSE)


@functools.lru_cache(maxsize=8)
def load_tokenizer(name: str):
    """The evaluated model's tokenizer (for its chat template and token counts), or None if it cannot be loaded
    (e.g. a served model name behind an OpenAI-compatible endpoint: set the model's ``tokenizer`` field)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as err:
        log.warning("no tokenizer for %r (%s): thinking/answer tokens are split by character share", name, err)
        return None


class ThinkReader:
    """Parses one model's responses and splits their token counts into thinking and answer tokens.

    The backend reports the response's total tokens; the share that is reasoning is measured with the model's
    tokenizer (tokens of the reasoning segment / tokens of the whole response), so thinking + answer = total exactly.
    Without a tokenizer the share is the segment's share of characters (``token_split`` says which was used).
    """

    def __init__(self, tokenizer, prompt_opens: bool):
        self.tokenizer = tokenizer
        self.prompt_opens = prompt_opens
        self.token_split = "tokenizer" if tokenizer is not None else "char_share"

    @classmethod
    def for_model(cls, spec, decoding: Decoding) -> "ThinkReader":
        tokenizer = load_tokenizer(spec.tokenizer or spec.model)
        plain = getattr(spec, "chat_template", None) == PLAIN_PROMPT  # no template: nothing opens a think block
        opens = (
            prompt_opens_think(tokenizer, decoding.chat_template_kwargs)
            if tokenizer is not None and not plain
            else False
        )
        if tokenizer is None and decoding.preset == "reasoning_r1":
            opens = True  # the R1-Distill template opens the block; with no tokenizer to read it, trust the preset
        return cls(tokenizer, opens)

    def _length(self, text: str) -> int:
        if self.tokenizer is None:
            return len(text)
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def read(self, text: str, output_tokens: int) -> dict:
        """Fields added to a response record: thinking, answer, think_state, final_answer, token split."""
        split = split_think(text, self.prompt_opens)
        if split.state == UNCLOSED:
            thinking_tokens = output_tokens
        elif split.state == ABSENT:
            thinking_tokens = 0
        else:
            whole = self._length(text)
            thinking_tokens = round(output_tokens * self._length(split.thinking_segment) / whole) if whole else 0
            thinking_tokens = min(thinking_tokens, output_tokens)
        return {
            "thinking": split.thinking,
            "answer": split.answer,
            "think_state": split.state,
            "final_answer": split.answer is not None,
            "has_thinking": bool(split.thinking),
            "thinking_tokens": thinking_tokens,
            "answer_tokens": output_tokens - thinking_tokens,
        }
