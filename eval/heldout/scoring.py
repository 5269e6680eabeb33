"""Judge-free held-out metrics: what training changed, measured on CULTURAX's test split without any judge.

For every evaluated model, reference responses are teacher-forced under the model's chat template exactly as
training renders them (``chat_template_kwargs``, e.g. thinking off for Qwen3), with the evaluated model's own
backend: batched forward passes of the transformers backend's model (PEFT adapter applied), or vLLM's prompt
logprobs (adapter as a LoRA request; tests/test_vllm.py holds the two against each other):

- held-out NLL = sum over responses of -log p(response tokens) / number of response tokens, on the SFT view's
  assistant turns (nats per token; lower is better);
- pairwise log-likelihood preference, on the DPO view's (prompt, chosen, rejected) pairs, for every model (the base
  included, so base -> SFT -> DPO changes pair on the same pairs): per pair, the difference of the mean per-token
  log-likelihood of chosen and of rejected, d = log p(chosen)/|chosen| − log p(rejected)/|rejected|; pairwise
  preference accuracy (%) = 100 · share of pairs with d > 0, pairwise log-prob margin = mean d (nats per token);
- for a DPO model, the reward DPO optimises, against its own reference (the SFT policy it started from, found by
  eval/heldout/dpo_reference.py): per pair r = β · [(log π(chosen) − log π_ref(chosen)) − (log π(rejected) − log
  π_ref(rejected))], log-probabilities summed over the response tokens (Rafailov et al., 2023, eq. 5; TRL's
  rewards/margins per pair); DPO reward accuracy (%) = 100 · share of pairs with r > 0 (TRL's rewards/accuracies),
  DPO reward margin = mean r, shown beside TRL's own numbers on the validation pairs logged during training.
Per-response and per-pair values are kept for paired bootstrap CIs.
"""

import logging
from pathlib import Path

import numpy as np
import torch
from datasets import load_from_disk
from tqdm.auto import tqdm

from core.chat_templates import always_thinks, chat_prompt, think_block, training_chat_template
from core.sampling import sample_rows
from eval import stats

log = logging.getLogger(__name__)


def load_heldout(data_dir: str, split: str, limit: int | None, seed: int = 0) -> dict:
    """The SFT view's (prompt turns, assistant turn) and the DPO view's (prompt, chosen, rejected) of one split, each
    cut to ``limit`` rows by a seeded sample stratified by first subdomain (core/sampling.py)."""
    views = {}
    for view, columns in (("sft", ("messages",)), ("dpo", ("prompt", "chosen", "rejected"))):
        path = Path(data_dir) / view
        if not path.exists():
            raise FileNotFoundError(f"{path}: the data pipeline's {view.upper()} view not found (heldout_data)")
        dsd = load_from_disk(str(path))
        if split not in dsd:
            raise ValueError(f"{path}: split '{split}' missing (has {sorted(dsd)})")
        ds = dsd[split]
        missing = [c for c in columns if c not in ds.column_names]
        if missing:
            raise ValueError(f"{path}/{split}: field '{missing[0]}': column missing")
        rows = sample_rows([(subs[0] if subs else -1,) for subs in ds["subdomains"]], limit, seed)
        views[view] = ds if len(rows) == len(ds) else ds.select(rows)
    sft = [(m[:-1], m[-1:]) for m in views["sft"]["messages"]]
    for i, (_, answer) in enumerate(sft):
        if not answer or answer[0]["role"] != "assistant":
            raise ValueError(f"{data_dir}/sft/{split}: row {i + 1}: field 'messages': last turn is not the assistant")
    dpo = views["dpo"]
    return {"sft": sft, "dpo": list(zip(dpo["prompt"], dpo["chosen"], dpo["rejected"], strict=True))}


def encode_pair(tokenizer, prompt: list[dict], answer: list[dict], template_kwargs: dict, eos_ids: set[int]):
    """(prompt ids, response ids) as training renders them: the full conversation under the chat template, split
    where the generation prompt ends; the response runs through its end-of-turn token (what follows is template
    whitespace, not the model's answer).

    DeepSeek-R1-Distill is scored as train/ trains it: the answer behind an empty think block, rendered by TRL's
    training template (its inference template drops everything up to ``</think>``, which would rewrite the prompt).
    The generation prompt ends in ``<think>\n``, so the scored response starts ``\n</think>\n\n``, as in DPO."""
    template = tokenizer.chat_template or ""
    prompt_text = chat_prompt(tokenizer, prompt, template_kwargs)
    if always_thinks(template):
        template = training_chat_template(tokenizer)
        answer = [
            {**m, "content": think_block("") + m["content"]} if "</think>" not in m["content"] else m for m in answer
        ]
    full_text = tokenizer.apply_chat_template(
        prompt + answer, tokenize=False, chat_template=template, **template_kwargs
    )
    if not full_text.startswith(prompt_text):
        raise ValueError(f"the chat template renders the prompt differently once an answer follows: {prompt_text!r}")
    answer_text = full_text[len(prompt_text) :]
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(answer_text, add_special_tokens=False)["input_ids"]
    end = next((k + 1 for k, t in enumerate(answer_ids) if t in eos_ids), len(answer_ids))
    return prompt_ids, answer_ids[:end]


@torch.inference_mode()
def response_logprobs(backend, items: list[tuple], template_kwargs: dict, max_length: int, desc: str) -> np.ndarray:
    """(n, 2) array: summed log-probability of each response's tokens and their count, teacher-forced.

    Rows are left-padded so every response ends at the last position; only the last (longest response + 1)
    positions' logits are computed (``logits_to_keep``), which keeps memory at batch × response × vocab.
    """
    tokenizer, model = backend.tokenizer, backend.model
    encoded = []
    for prompt, answer in items:
        prompt_ids, answer_ids = encode_pair(tokenizer, prompt, answer, template_kwargs, backend.eos_ids)
        answer_ids = answer_ids[: max_length - 1]
        encoded.append((prompt_ids[-(max_length - len(answer_ids)) :], answer_ids))
    out = np.zeros((len(items), 2))
    order = sorted(range(len(items)), key=lambda i: sum(map(len, encoded[i])))
    size = backend.cfg.batch_size
    for start in tqdm(range(0, len(order), size), desc=desc, unit="batch", disable=None, leave=False):
        batch = order[start : start + size]
        rows = [encoded[i][0] + encoded[i][1] for i in batch]
        width = max(map(len, rows))
        pad = tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=backend.device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=backend.device)
        lengths = [len(encoded[i][1]) for i in batch]
        keep = max(lengths) + 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep).logits
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        targets = ids[:, width - keep + 1 :]
        token_logp = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        for row, (index, length) in enumerate(zip(batch, lengths, strict=True)):
            out[index] = (float(token_logp[row, keep - 1 - length :].sum()), length)
    return out


def vllm_response_logprobs(backend, items: list[tuple], template_kwargs: dict, max_length: int, desc: str):
    """The same (n, 2) array from vLLM's prompt logprobs: each whole sequence is a prompt, and vLLM returns the
    log-probability of every prompt token given the ones before (exact; core/llm/vllm_backend.py)."""
    sequences, lengths = [], []
    for prompt, answer in items:
        prompt_ids, answer_ids = encode_pair(backend.tokenizer, prompt, answer, template_kwargs, backend.eos_ids)
        answer_ids = answer_ids[: max_length - 1]
        sequences.append(prompt_ids[-(max_length - len(answer_ids)) :] + answer_ids)
        lengths.append(len(answer_ids))
    log.info("%s: %d sequences through vLLM prompt logprobs", desc, len(sequences))
    scored = backend.prompt_logprobs(sequences)
    return np.array([(sum(row[len(row) - n :]), n) for row, n in zip(scored, lengths, strict=True)], dtype=float)


def score_model(backend, data: dict, template_kwargs: dict, max_length: int, name: str) -> dict:
    """Per-response (logprob sum, tokens) on the SFT view and per-pair summed logprobs of chosen and rejected."""
    score = vllm_response_logprobs if hasattr(backend, "prompt_logprobs") else response_logprobs
    sft = score(backend, data["sft"], template_kwargs, max_length, f"held-out NLL: {name}")
    pairs = [(p, c) for p, c, _ in data["dpo"]] + [(p, r) for p, _, r in data["dpo"]]
    both = score(backend, pairs, template_kwargs, max_length, f"held-out pairs: {name}")
    n = len(data["dpo"])
    return {
        "nll_sum": -sft[:, 0],
        "tokens": sft[:, 1],
        "chosen": both[:n, 0],
        "rejected": both[n:, 0],
        "chosen_tokens": both[:n, 1],
        "rejected_tokens": both[n:, 1],
    }


def pairwise_logp_differences(scored: dict) -> np.ndarray:
    """Per pair: mean per-token log-likelihood of chosen − of rejected (nats per token)."""
    return scored["chosen"] / scored["chosen_tokens"] - scored["rejected"] / scored["rejected_tokens"]


def dpo_rewards(scored: dict, reference: dict, beta: float) -> np.ndarray:
    """Per pair β·[(log π(c) − log π_ref(c)) − (log π(r) − log π_ref(r))], log-probabilities summed over tokens."""
    return beta * ((scored["chosen"] - reference["chosen"]) - (scored["rejected"] - reference["rejected"]))


def heldout_metrics(scored: dict, dpo: dict | None = None) -> dict:
    """results.json's ``heldout`` entry of one model; ``dpo`` adds a DPO model's reward metrics (attach_heldout)."""
    nll = float(scored["nll_sum"].sum() / scored["tokens"].sum()) if scored["tokens"].sum() else float("nan")
    differences = pairwise_logp_differences(scored)
    return {
        "nll": nll,
        "n_responses": int(len(scored["tokens"])),
        "n_pairs": int(len(scored["chosen"])),
        "pairwise_preference_accuracy": stats.mean_percent(differences > 0) if differences.size else float("nan"),
        "pairwise_logp_margin": float(differences.mean()) if differences.size else float("nan"),
        **(dpo or {}),
    }


def dpo_metrics(scored: dict, reference: dict | None, run) -> dict:
    """A DPO model's reward accuracy and margin against its reference (``run``: dpo_reference.DpoRun; null when
    its reference was not evaluated), with TRL's validation numbers beside them."""
    rewards = dpo_rewards(scored, reference, run.beta) if reference is not None else np.array([])
    return {
        "dpo_reference": run.reference,
        "dpo_beta": run.beta,
        "dpo_reward_accuracy": stats.mean_percent(rewards > 0) if rewards.size else None,
        "dpo_reward_margin": float(rewards.mean()) if rewards.size else None,
        "dpo_trl_validation": run.trl_validation,
    }


def heldout_deltas(base: dict, tuned: dict, n_resamples: int, seed: int) -> dict:
    """Paired changes tuned − baseline: NLL per token (ratio of sums over the same responses), pairwise preference
    accuracy (percentage points) and pairwise log-prob margin (nats per token), each with its bootstrap CI and n."""
    boot = {"n_resamples": n_resamples, "seed": seed}
    base_d, tuned_d = pairwise_logp_differences(base), pairwise_logp_differences(tuned)
    return {
        "heldout_nll": stats.paired_bootstrap_ratio_of_sums(
            (base["nll_sum"], base["tokens"]), (tuned["nll_sum"], tuned["tokens"]), **boot
        ),
        "heldout_pairwise_preference_accuracy": stats.paired_bootstrap_delta(
            (base_d > 0).astype(float), (tuned_d > 0).astype(float), **boot
        ),
        "heldout_pairwise_logp_margin": stats.paired_bootstrap_delta(
            base_d, tuned_d, statistic=stats.mean_stat, **boot
        ),
    }


def model_scores(cfg, spec, llm, data: dict) -> dict | None:
    """Teacher-forced scores of one evaluated model with the backend that generated its responses (transformers:
    batched forward passes; vLLM: prompt logprobs); None for an API model (no weights to teacher-force: its
    held-out metrics are null)."""
    llm_cfg = cfg.model_llm_config(spec)
    if llm_cfg.backend == "openai":
        log.warning("held-out metrics: %s is served over an API (no weights); its values are null", spec.name)
        return None
    template_kwargs = llm_cfg.chat_template_kwargs
    return score_model(llm.backend, data, template_kwargs, cfg.heldout_max_length, spec.name)


def attach_heldout(runs: dict, dpo: dict) -> None:
    """Fill each run's metrics["heldout"]; a DPO model (``dpo``: eval/heldout/dpo_reference.py dpo_runs) gets its reward
    metrics against its reference's scores."""
    for name, run in runs.items():
        scored = run["heldout_scores"]
        if scored is None:
            run["metrics"]["heldout"] = None
            continue
        extra = None
        if name in dpo:
            reference = runs[dpo[name].reference]["heldout_scores"] if dpo[name].reference else None
            extra = dpo_metrics(scored, reference, dpo[name])
        run["metrics"]["heldout"] = heldout_metrics(scored, extra)
