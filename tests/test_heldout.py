"""Judge-free held-out metrics (eval/heldout/): hand-computed metric math, how a DPO
model's reference is found, and teacher-forced log-probabilities on the tiny models checked against a direct,
unbatched forward pass over the same tokens."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from datasets import Dataset
from trl.chat_template_utils import get_training_chat_template

from core.llm.base import LLMConfig, adapter_fingerprint
from core.llm.transformers_backend import TransformersBackend
from eval.config import ModelSpec
from eval.heldout import scoring as heldout
from eval.heldout.dpo_reference import DpoRun, dpo_runs
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


def test_metrics_by_hand():
    scored = {
        "nll_sum": np.array([10.0, 20.0]),
        "tokens": np.array([5.0, 5.0]),
        "chosen": np.array([-10.0, -12.0, -8.0]),
        "rejected": np.array([-11.0, -9.0, -8.5]),
        "chosen_tokens": np.array([5.0, 4.0, 2.0]),
        "rejected_tokens": np.array([10.0, 3.0, 1.0]),
    }
    # Mean per-token log-likelihood, chosen − rejected: -2 - (-1.1) = -0.9, -3 - (-3) = 0, -4 - (-8.5) = +4.5:
    # only pair 3 prefers chosen (a tie is no preference) -> 33.3%; margin mean(-0.9, 0, 4.5) = 1.2.
    # NLL/token = (10 + 20) / (5 + 5) = 3.
    assert heldout.heldout_metrics(scored) == {
        "nll": 3.0,
        "n_responses": 2,
        "n_pairs": 3,
        "pairwise_preference_accuracy": pytest.approx(100 / 3),
        "pairwise_logp_margin": pytest.approx(1.2),
    }
    # DPO reward against a reference: β·((c − c_ref) − (r − r_ref)) with the reference at -10 everywhere:
    # 0.1·(0 − (−1)) = 0.1, 0.1·(−2 − 1) = −0.3, 0.1·(2 − 1.5) = 0.05 -> 2 of 3 positive, mean −0.05.
    reference = {**scored, "chosen": np.full(3, -10.0), "rejected": np.full(3, -10.0)}
    assert heldout.dpo_rewards(scored, reference, 0.1) == pytest.approx([0.1, -0.3, 0.05])
    run = DpoRun("tiny+sft", "runs/sft", 0.1, {"step": 4, "reward_accuracy": 50.0, "reward_margin": 0.01})
    dpo = heldout.dpo_metrics(scored, reference, run)
    assert dpo["dpo_reward_accuracy"] == pytest.approx(200 / 3) and dpo["dpo_reward_margin"] == pytest.approx(-0.05)
    assert dpo["dpo_reference"] == "tiny+sft" and dpo["dpo_trl_validation"]["step"] == 4
    unevaluated = heldout.dpo_metrics(scored, None, DpoRun(None, "runs/sft", 0.1, None))
    assert unevaluated["dpo_reward_margin"] is None and unevaluated["dpo_reference"] is None
    # A tuned model with NLL 2.5/token on the same responses and chosen preferred on every pair: the changes are
    # -0.5 nats/token on n=2 (too few to call) and +66.7 points of pairwise preference on n=3.
    tuned = {**scored, "nll_sum": np.array([5.0, 20.0]), "chosen": np.array([-5.0, -6.0, -4.0])}
    deltas = heldout.heldout_deltas(scored, tuned, n_resamples=200, seed=0)
    assert deltas["heldout_nll"]["delta"] == pytest.approx(-0.5) and deltas["heldout_nll"]["n"] == 2
    assert deltas["heldout_nll"]["too_few"] is True
    assert deltas["heldout_pairwise_preference_accuracy"]["delta"] == pytest.approx(200 / 3)
    assert deltas["heldout_pairwise_preference_accuracy"]["n"] == 3
    # tuned differences: -1 - (-1.1) = 0.1, -1.5 - (-3) = 1.5, -2 - (-8.5) = 6.5 -> mean 8.1/3 = 2.7; change 1.5
    assert deltas["heldout_pairwise_logp_margin"]["delta"] == pytest.approx(1.5)


def test_dpo_reference_is_the_evaluated_model_with_the_sft_adapters_content(tmp_path):
    """dpo_reference.py reads train/dpo.py's record; the reference is found by the SFT adapter's sha256, so a
    copy of the adapter under another path still matches; TRL's last eval rewards come from trainer_state.json."""
    sft, dpo, copy = tmp_path / "sft", tmp_path / "dpo", tmp_path / "elsewhere" / "sft"
    for folder, weights in ((sft, b"sft"), (dpo, b"dpo"), (copy, b"sft")):
        folder.mkdir(parents=True)
        (folder / "adapter_model.safetensors").write_bytes(weights)
    record = {"base_model": "base", "sft_adapter": str(sft), "sft_adapter_sha256": adapter_fingerprint(str(sft))}
    (dpo / "dpo_reference.json").write_text(json.dumps({**record, "beta": 0.1, "loss_type": ["sigmoid"]}))
    history = [{"step": 2, "eval_rewards/accuracies": 0.25, "eval_rewards/margins": 0.001}, {"step": 4, "loss": 0.6}]
    history.append({"step": 4, "eval_rewards/accuracies": 0.75, "eval_rewards/margins": 0.004})
    (dpo / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    models = [{"name": "base", "model": "base"}, {"name": "sft", "model": "base", "adapter": str(copy)}]
    models.append({"name": "dpo", "model": "base", "adapter": str(dpo)})
    cfg = SimpleNamespace(model_specs=[ModelSpec(**m) for m in models])
    found = dpo_runs(cfg)
    assert set(found) == {"dpo"} and found["dpo"].reference == "sft" and found["dpo"].beta == 0.1
    assert found["dpo"].trl_validation == {
        "step": 4, "reward_accuracy": 75.0, "reward_margin": 0.004, "source": str(dpo / "trainer_state.json")
    }  # fmt: skip
    (copy / "adapter_model.safetensors").write_bytes(b"retrained")  # another SFT adapter: not the reference
    assert dpo_runs(cfg)["dpo"].reference is None


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
