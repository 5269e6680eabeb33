"""Local weights through transformers (hub id or path), with an optional PEFT adapter.

Generation is batched with the chat template and left padding. Sampling is done by a logits processor that draws
each row's token with that row's own ``torch.Generator``, seeded from the conversation and the candidate's seed:
candidate k of a conversation is the same token sequence whatever else shares its batch (up to float rounding
between padded shapes), which is what makes per-candidate caching and crash-resume give identical output. A request
with a JSON schema is constrained by xgrammar's logits processor (core/llm/structured.py), batched with requests of
the same schema; the grammar's mask comes before the sampler.
"""

import gc
import time
from collections.abc import Callable

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from core.chat_templates import chat_prompt
from core.llm.base import (
    Completion,
    GenerationRequest,
    LLMConfig,
    Sampling,
    adapter_fingerprint,
    canonical_json,
    first_token_ids,
    row_seed,
)
from core.llm.structured import XGrammarConstraint


class SeededSampler(LogitsProcessor):
    """Temperature + top-p sampling with one generator per row; returns logits that make greedy pick the sample."""

    def __init__(self, seeds: list[int], sampling: Sampling):
        self.seeds = seeds
        self.generators: list[torch.Generator] | None = None  # made on the device the logits arrive on
        self.temperature = sampling.temperature
        self.top_k = TopKLogitsWarper(sampling.top_k) if sampling.top_k else None
        self.top_p = TopPLogitsWarper(sampling.top_p) if sampling.top_p < 1 else None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.generators is None:
            self.generators = [torch.Generator(device=scores.device).manual_seed(seed) for seed in self.seeds]
        scores = scores.float() / self.temperature
        if self.top_k is not None:  # transformers' order: top-k, then top-p
            scores = self.top_k(input_ids, scores)
        if self.top_p is not None:
            scores = self.top_p(input_ids, scores)
        probs = torch.softmax(scores, dim=-1)
        chosen = torch.empty(len(self.generators), dtype=torch.long, device=scores.device)
        for row, generator in enumerate(self.generators):
            # Exponential race: argmax(p / E) with E ~ Exp(1) draws index i with probability p_i.
            race = torch.empty_like(probs[row]).exponential_(generator=generator)
            chosen[row] = torch.argmax(probs[row] / race)
        forced = torch.full_like(scores, float("-inf"))
        forced[torch.arange(len(chosen)), chosen] = 0.0
        return forced


class RepetitionPenalty(LogitsProcessor):
    """The repetition penalty over each row's own tokens (prompt and answer so far), never its left padding:
    transformers' RepetitionPenaltyLogitsProcessor counts pad tokens as seen, which would make a row's answer depend
    on what it is batched with (a padded row's pad token, an end-of-text token for Qwen, penalised). The same rule as
    that processor and vLLM's: a seen token's logit divided by the penalty when positive, multiplied when negative."""

    def __init__(self, penalty: float, first_token: list[int]):
        self.penalty = penalty
        self.first_token = first_token  # per row: where its tokens start after the left padding

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores = scores.clone()
        for row, start in enumerate(self.first_token):
            seen = input_ids[row, start:]
            logits = scores[row].gather(0, seen)
            scores[row].scatter_(0, seen, torch.where(logits > 0, logits / self.penalty, logits * self.penalty))
        return scores


class TransformersBackend:
    def __init__(self, cfg: LLMConfig):
        self.cfg = cfg
        self.tokenizer = AutoTokenizer.from_pretrained(cfg.model)
        self.tokenizer.padding_side = "left"  # generation continues every row from its last real token
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # On GPUs, accelerate places the weights (across several GPUs if one is too small); on CPU, plain load.
        device_map = "auto" if torch.cuda.is_available() else None
        model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=cfg.dtype, device_map=device_map)
        if cfg.adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, cfg.adapter)
        self.model = model.eval()
        self.device = model.get_input_embeddings().weight.device  # where the inputs go
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        self._grammar: XGrammarConstraint | None = None  # built on the first structured request
        self._warm_up()

    @torch.inference_mode()
    def _warm_up(self) -> None:
        """One untimed forward pass: the first call pays one-off allocator and kernel set-up, which would otherwise
        land in the first batch's latency and bias efficiency comparisons against whichever model runs first."""
        enc = self._encode([[{"role": "user", "content": "Hello"}]])
        self.model(**enc, logits_to_keep=1)

    def close(self) -> None:
        """Drop the weights (freed once nothing else refers to the model)."""
        self.model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def key_fields(self) -> dict:
        return {"adapter_sha256": adapter_fingerprint(self.cfg.adapter)}

    def prompt_text(self, messages: list[dict]) -> str:
        """The exact text the model continues: chat template + generation prompt + chat_template_kwargs."""
        return chat_prompt(self.tokenizer, messages, self.cfg.chat_template_kwargs, self.cfg.chat_template)

    def _encode(self, conversations: list[list[dict]]) -> dict:
        # The template already writes BOS/specials; add_special_tokens=False keeps them from doubling.
        texts = [self.prompt_text(messages) for messages in conversations]
        enc = self.tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False)
        return {name: tensor.to(self.device) for name, tensor in enc.items()}

    def _batches(self, items: list, length: Callable) -> list[list[int]]:
        """Index batches of ``batch_size``, similar lengths together (less padding)."""
        order = sorted(range(len(items)), key=lambda i: length(items[i]))
        size = self.cfg.batch_size
        return [order[start : start + size] for start in range(0, len(order), size)]

    @torch.inference_mode()
    def generate(self, requests: list[GenerationRequest], on_done: Callable[[int, Completion], None]) -> None:
        groups: dict[tuple[Sampling, str | None], list[int]] = {}
        for index, request in enumerate(requests):
            schema = canonical_json(request.json_schema) if request.json_schema is not None else None
            groups.setdefault((request.sampling, schema), []).append(index)
        for (sampling, _), indices in groups.items():
            for batch in self._batches(indices, lambda i: len(str(requests[i].messages))):
                self._generate_batch([indices[j] for j in batch], requests, sampling, on_done)

    def _structured(self, schema: dict) -> LogitsProcessor:
        """xgrammar's processor enforcing ``schema`` (core/llm/structured.py), for one generate call."""
        if self._grammar is None:
            vocab = self.model.get_output_embeddings().weight.shape[0]  # may exceed the tokenizer's (padding rows)
            self._grammar = XGrammarConstraint(self.tokenizer, vocab, sorted(self.eos_ids))
        return self._grammar.logits_processor(schema)

    def _generate_batch(self, indices, requests, sampling: Sampling, on_done) -> None:
        start = time.perf_counter()
        enc = self._encode([requests[i].messages for i in indices])
        config = GenerationConfig(
            max_new_tokens=sampling.max_new_tokens,
            do_sample=False,  # sampling happens in SeededSampler; greedy then takes its pick
            eos_token_id=sorted(self.eos_ids),
            pad_token_id=self.tokenizer.pad_token_id,
        )
        processors = LogitsProcessorList()
        schema = requests[indices[0]].json_schema  # one schema per batch (generate groups by it)
        if schema is not None:  # the grammar's mask first: the sampler draws among allowed tokens only
            processors.append(self._structured(schema))
        if sampling.repetition_penalty != 1.0:  # before sampling, as in transformers' and vLLM's order
            first_token = (enc["attention_mask"].shape[1] - enc["attention_mask"].sum(-1)).tolist()
            processors.append(RepetitionPenalty(sampling.repetition_penalty, first_token))
        if sampling.temperature > 0:
            seeds = [row_seed(requests[i].messages, requests[i].seed) for i in indices]
            processors.append(SeededSampler(seeds, sampling))
        output = self.model.generate(**enc, generation_config=config, logits_processor=processors)
        latency = time.perf_counter() - start
        new_tokens = output[:, enc["input_ids"].shape[1] :].tolist()
        for index, tokens in zip(indices, new_tokens, strict=True):
            length = next((pos + 1 for pos, token in enumerate(tokens) if token in self.eos_ids), len(tokens))
            text = self.tokenizer.decode(tokens[:length], skip_special_tokens=True)
            on_done(index, Completion(text, length, latency_s=latency, cached=False, wall_s=latency / len(indices)))

    @torch.inference_mode()
    def next_token_log_softmax(self, conversations: list[list[dict]]) -> torch.Tensor:
        """(batch, vocab) float32 log-probabilities of the first reply token; one forward pass for the batch."""
        enc = self._encode(conversations)
        # Positions count real tokens only, so a left-padded row scores exactly like the same row unpadded.
        position_ids = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        logits = self.model(**enc, position_ids=position_ids, logits_to_keep=1).logits[:, -1, :]
        return torch.log_softmax(logits.float(), dim=-1).cpu()

    def option_token_ids(self, options: list[str]) -> list[int]:
        """First token of each option, tokenised as written (a leading space is part of the option if you give it)."""
        return first_token_ids(self.tokenizer, options)

    def next_token_logprobs(self, conversations, options, on_done) -> None:
        """Exact log-probabilities over the whole vocabulary. Options sharing a first token get the same value."""
        token_ids = self.option_token_ids(options)
        for batch in self._batches(conversations, lambda c: len(str(c))):
            log_probs = self.next_token_log_softmax([conversations[i] for i in batch])
            for row, index in enumerate(batch):
                on_done(index, {option: float(log_probs[row, t]) for option, t in zip(options, token_ids, strict=True)})

    def top_logprobs(self, messages: list[dict], k: int) -> list[tuple[str, float]]:
        """The k most likely first reply tokens as (decoded text, logprob): what an OpenAI server reports."""
        log_probs = self.next_token_log_softmax([messages])[0]
        values, ids = torch.topk(log_probs, k)
        return [(self.tokenizer.decode([t]), float(v)) for t, v in zip(ids.tolist(), values.tolist(), strict=True)]
