"""Judge-free held-out metrics (eval/heldout.py): hand-computed metric math, and teacher-forced log-probabilities
on the tiny models checked against a direct, unbatched forward pass over the same tokens."""

import math

import numpy as np
import pytest
import torch
from datasets import Dataset
from trl.chat_template_utils import get_training_chat_template

from core.llm.base import LLMConfig
from core.llm.transformers_backend import TransformersBackend
from eval import heldout
from tests.conftest import REPO_ROOT
from train.data import prepare_conversations

KW = {"enable_thinking": False}
CONVERSATIONS = [
    ([{"role": "user", "content": "How is washi paper made?"}], [{"role": "assistant", "content": "By hand."}]),
    (
        [{"role": "user", "content": "Why are Kathakali faces green?"}],
        [{"role": "assistant", "content": "Green (pacha) marks noble heroes in the make-up code of the dance."}],
    ),
    ([{"role": "user", "content": "Name a festival."}], [{"role": "assistant", "content": "Onam, in Kerala."}]),
]


def test_beta_comes_from_the_dpo_recipe(tmp_path):
    assert heldout.read_beta(str(REPO_ROOT / "configs/train/tiny-qwen3/dpo_lora.yaml")) == 0.1
    (tmp_path / "dpo.yaml").write_text("learning_rate: 1.0e-6\n")
    with pytest.raises(ValueError, match=r"dpo.yaml: field 'beta'"):
        heldout.read_beta(str(tmp_path / "dpo.yaml"))


def test_metrics_by_hand():
    scored = {
        "nll_sum": np.array([10.0, 20.0]),
        "tokens": np.array([5.0, 5.0]),
        "chosen": np.array([-10.0, -12.0, -8.0]),
        "rejected": np.array([-11.0, -9.0, -8.5]),
    }
    reference = {**scored, "chosen": np.full(3, -10.0), "rejected": np.full(3, -10.0)}
    # Per pair (r(chosen) - r(rejected)): (0 - (-1)) = +1, (-2 - 1) = -3, (2 - 1.5) = +0.5 -> 2 of 3 favour chosen;
    # margin = 0.1 * mean(+1, -3, +0.5) = -0.05. NLL/token = (10 + 20) / (5 + 5) = 3.
    out = heldout.heldout_metrics(scored, reference, beta=0.1)
    assert out == {
        "nll": 3.0,
        "n_responses": 2,
        "n_pairs": 3,
        "preference_accuracy": pytest.approx(200 / 3),
        "reward_margin": pytest.approx(-0.05),
    }
    assert heldout.heldout_metrics(reference, None, 0.1)["preference_accuracy"] is None  # the reference itself
    won, margin = heldout.per_pair_values(scored, reference, 0.1)
    assert won.tolist() == [1.0, 0.0, 1.0] and margin == pytest.approx([0.1, -0.3, 0.05])
    # A tuned model with NLL 2.5/token on the same responses: the change is -0.5 on n=2 (too few to call).
    tuned = {**scored, "nll_sum": np.array([5.0, 20.0]), "won": won, "margin": margin}
    base = {**scored, "won": np.full(3, np.nan), "margin": np.full(3, np.nan)}
    deltas = heldout.heldout_deltas(base, tuned, n_resamples=200, seed=0)
    assert deltas["heldout_nll"]["delta"] == pytest.approx(-0.5) and deltas["heldout_nll"]["n"] == 2
    assert deltas["heldout_nll"]["too_few"] is True
    assert deltas["heldout_preference_accuracy"]["n"] == 0  # undefined for the reference: no change to show
    assert math.isnan(deltas["heldout_reward_margin"]["delta"])


@pytest.fixture(scope="module")
def qwen3(tiny_models):
    return TransformersBackend(
        LLMConfig(model=tiny_models["tiny-qwen3"], dtype="float32", batch_size=2, chat_template_kwargs=KW)
    )


def test_response_is_the_assistant_turn_through_its_end_token(qwen3):
    prompt_ids, answer_ids = heldout.encode_pair(qwen3.tokenizer, *CONVERSATIONS[0], KW, qwen3.eos_ids)
    assert qwen3.tokenizer.decode(prompt_ids).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert qwen3.tokenizer.decode(answer_ids) == "By hand.<|im_end|>"


def test_batched_teacher_forcing_equals_a_direct_forward_pass(qwen3):
    batched = heldout.response_logprobs(qwen3, CONVERSATIONS, KW, 1024, "test")
    for (prompt, answer), (logprob_sum, tokens) in zip(CONVERSATIONS, batched, strict=True):
        prompt_ids, answer_ids = heldout.encode_pair(qwen3.tokenizer, prompt, answer, KW, qwen3.eos_ids)
        ids = torch.tensor([prompt_ids + answer_ids])
        with torch.no_grad():
            logp = torch.log_softmax(qwen3.model(input_ids=ids).logits[0].float(), dim=-1)
        start = len(prompt_ids)
        direct = sum(float(logp[start + k - 1, t]) for k, t in enumerate(answer_ids))
        assert tokens == len(answer_ids)
        assert logprob_sum == pytest.approx(direct, abs=1e-3)  # left padding in a batch of 2 changes nothing


def test_deepseek_response_is_scored_behind_the_empty_think_block_it_is_trained_with(tiny_models):
    backend = TransformersBackend(LLMConfig(model=tiny_models["tiny-qwen2"], dtype="float32"))
    prompt_ids, answer_ids = heldout.encode_pair(backend.tokenizer, *CONVERSATIONS[0], {}, backend.eos_ids)
    assert backend.tokenizer.decode(prompt_ids).endswith("<｜Assistant｜><think>\n")
    assert backend.tokenizer.decode(answer_ids) == "\n</think>\n\nBy hand.<｜end▁of▁sentence｜>"
    # The same tokens DPO trains on: train/'s prepared row under TRL's training template, split after the prompt.
    tokenizer = backend.tokenizer
    prepared = prepare_conversations(
        Dataset.from_list([{"messages": CONVERSATIONS[0][0] + CONVERSATIONS[0][1]}]),
        tokenizer,
        ["messages"],
        enable_thinking=False,
    )[0]["messages"]
    trained = tokenizer.apply_chat_template(
        prepared, tokenize=False, chat_template=get_training_chat_template(tokenizer)
    )
    assert trained == tokenizer.decode(prompt_ids + answer_ids)
