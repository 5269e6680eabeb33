"""Chat-template rules every stage shares: how a thinking model's answers are rendered for training, scoring and
generation, so that train/ trains, eval/ scores and the LLM backends prompt exactly the same text.

- DeepSeek-R1-Distill's template always opens ``<think>\n`` at the generation prompt (``always_thinks``); an answer
  without reasoning is rendered behind an empty, closed think block (``EMPTY_THINK``) so the prompt stays a prefix
  of prompt + answer.
- Qwen3's template has an ``enable_thinking`` switch and writes its own empty block when thinking is off.
- ``training_chat_template``: the training variant of a known family's template, with ``{% generation %}`` markers
  around each assistant turn for assistant-only loss: TRL's (Qwen3; R1-Distill's, which keeps reasoning that the
  inference template cuts at ``</think>``) or, for templates TRL has none for, ours in ``core/templates/``
  (SmolLM2's ChatML: the same text, the mask covering the answer and its closing ``<|im_end|>``, which is also the pad
  token, so a model trained on it learns to stop).
"""

import logging
from pathlib import Path

logger = logging.getLogger(__name__)

# DeepSeek-R1-Distill always opens "<think>\n" in its generation prompt; an answer without reasoning is trained as an
# empty, closed think block so the prompt stays a prefix of prompt+answer (as TRL's DPO tokenisation needs).
EMPTY_THINK = "<think>\n\n</think>\n\n"
TEMPLATES = Path(__file__).parent / "templates"


def _template(name: str) -> str:
    return (TEMPLATES / f"{name}.jinja").read_text(encoding="utf-8")


# Inference templates TRL has no training variant for -> ours (same rendering, {% generation %} markers added).
OWN_TRAINING_TEMPLATES = {_template(name): _template(f"{name}_training") for name in ("chatml_smollm2",)}
PLAIN_PROMPT = "none"  # a model's chat_template setting: no template, the prompt as plain text (chat_prompt)


def think_block(reasoning: str) -> str:
    """The think block an assistant answer is trained with: the trace when there is one, else empty and closed."""
    return f"<think>\n{reasoning}\n</think>\n\n" if reasoning.strip() else EMPTY_THINK


def always_thinks(template: str) -> bool:
    """A DeepSeek-R1-Distill-style template: it opens <think> at every answer, with no switch to turn that off."""
    return "</think>" in template and "enable_thinking" not in template


def has_thinking_switch(template: str) -> bool:
    """A Qwen3-style template: ``enable_thinking`` turns reasoning on or off per conversation."""
    return "enable_thinking" in template


def training_chat_template(tokenizer) -> str:
    """The template train/ renders conversations with: the training variant of the tokenizer's template (ours for
    the families in OWN_TRAINING_TEMPLATES, else TRL's, which keeps reasoning that DeepSeek-R1-Distill's inference
    template cuts at </think>), else the tokenizer's own."""
    from trl.chat_template_utils import get_training_chat_template  # TRL only where a training template is asked for

    if tokenizer.chat_template in OWN_TRAINING_TEMPLATES:
        return OWN_TRAINING_TEMPLATES[tokenizer.chat_template]
    try:
        return get_training_chat_template(tokenizer) or tokenizer.chat_template
    except ValueError:  # a family TRL has no training template for
        logger.warning("no TRL training chat template for this tokenizer; rendering with its own template")
        return tokenizer.chat_template


def chat_prompt(tokenizer, messages: list[dict], chat_template_kwargs: dict, chat_template: str | None = None) -> str:
    """The exact text a local model continues: chat template + generation prompt + chat_template_kwargs. Shared by
    the transformers and vllm backends and held-out scoring, so all see identical prompts.

    ``chat_template="none"`` (a base model prompted as its card shows, e.g. Gemma-7B, DeepSeek-LLM-7B-base): no
    template; the messages' contents joined by a blank line after the tokenizer's BOS, which the backends' encoding
    (``add_special_tokens=False``, since templates write BOS themselves) would otherwise leave out."""
    if chat_template == PLAIN_PROMPT:
        return (tokenizer.bos_token or "") + "\n\n".join(message["content"] for message in messages)
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **chat_template_kwargs)
