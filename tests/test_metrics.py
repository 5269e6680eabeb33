"""Metric math on hand-computed inputs (eval/hhh/metrics.py)."""

import math

import numpy as np
import pytest

from eval import stats
from eval.hhh import metrics

nan = float("nan")


def test_pairwise_score_cancels_position_bias_and_counts_ties_half():
    assert metrics.pairwise_score("A", "B") == 1.0  # model preferred in both orders
    assert metrics.pairwise_score("B", "A") == 0.0  # reference preferred in both orders
    assert metrics.pairwise_score("A", "A") == 0.5  # judge always picks slot A: position bias cancels
    assert metrics.pairwise_score("tie", "B") == 0.75
    assert math.isnan(metrics.pairwise_score(None, "B"))  # a failed order voids the prompt


def test_win_rate_safety_truth_info_and_joint_hhh_by_hand():
    # prompts: win, loss, position-biased, one tie + one win, failed -> (1 + 0 + 0.5 + 0.75) / 4 = 56.25 %
    scores = [metrics.pairwise_score(*v) for v in [("A", "B"), ("B", "A"), ("A", "A"), ("tie", "B"), (None, "A")]]
    assert metrics.win_rate(scores) == pytest.approx(56.25)
    assert metrics.safety_score([1, 0, 0, 1, nan]) == pytest.approx(50.0)  # 2 unsafe of 4 judged
    # truthful & informative: only questions 1 and 4 are both; question 5 failed -> 2 / 4
    assert metrics.truth_info([1, 1, 0, 1, nan], [1, 0, 1, 1, 1]) == pytest.approx(50.0)
    assert metrics.joint_hhh(56.25, 50.0, 50.0) == pytest.approx(56.25 / 3)
    assert math.isnan(metrics.win_rate([nan, nan]))


def test_cultural_failure_rates_overall_per_subdomain_and_type():
    labels = ["none", "stereotyping", "refusal", None, "none", "stereotyping"]
    subdomains = [[11], [11, 15], [15], [15], [21], [21]]
    out = metrics.cultural_failure_rates(labels, subdomains)
    assert out["overall"] == pytest.approx(60.0)  # 3 failures of 5 judged
    assert out["per_type"]["stereotyping"] == pytest.approx(40.0)
    assert out["per_type"]["refusal"] == pytest.approx(20.0)
    assert sum(out["per_type"].values()) == pytest.approx(out["overall"])
    assert out["per_subdomain"]["11"] == {"n": 2, "judged": 2, "failure_rate": 50.0}
    assert out["per_subdomain"]["15"] == {"n": 3, "judged": 2, "failure_rate": 100.0}  # multi-label row counts twice
    assert out["per_subdomain"]["21"]["failure_rate"] == pytest.approx(50.0)


def test_generation_and_training_efficiency():
    # Two responses of one batch that took 1.0 s: each waited for it (latency), each carries half its wall time.
    eff = metrics.generation_efficiency([10, 30], [1.0, 1.0], [0.5, 0.5])
    assert eff == {
        "responses": 2,
        "output_tokens_per_response": 20.0,
        "latency_s_per_response": 1.0,
        "tokens_per_s": 40.0,  # 40 tokens in the 1.0 s the batch took, not 40 / (1.0 + 1.0)
    }
    unmeasured = metrics.generation_efficiency([10, 30], [1.0, None], [0.5, None])  # e.g. an older cache entry
    assert math.isnan(unmeasured["latency_s_per_response"]) and math.isnan(unmeasured["tokens_per_s"])
    train = metrics.training_efficiency(
        [
            {"train_tokens": 1000, "train_runtime": 10, "gpu_hours": 0.5},
            {"train_tokens": 500, "train_runtime": 20, "gpu_hours": 0.25},
        ]
    )
    assert train["train_tokens_per_s"] == pytest.approx(50.0)
    assert train["gpu_hours"] == pytest.approx(0.75)


def test_paired_bootstrap_is_deterministic_and_brackets_the_delta():
    base = np.array([0, 0, 1, 0, 1, 0, 0, 1, 0, 0], dtype=float)  # 30 %
    tuned = np.array([1, 0, 1, 1, 1, 0, 1, 1, 0, 1], dtype=float)  # 70 %
    first = stats.paired_bootstrap_delta(base, tuned, n_resamples=2000, seed=7)
    again = stats.paired_bootstrap_delta(base, tuned, n_resamples=2000, seed=7)
    assert first == again  # fixed seed: no noise in a reported number
    assert first["delta"] == pytest.approx(40.0)
    assert first["ci_low"] < 40.0 < first["ci_high"]
    # Paired: the per-prompt difference is 0 or +1 (never -1), so no resample can show a decrease.
    assert first["ci_low"] >= 0.0
    same = stats.paired_bootstrap_delta(base, base, n_resamples=500, seed=0)
    assert same == {"delta": 0.0, "ci_low": 0.0, "ci_high": 0.0, "n": 10, "too_few": False}
    with pytest.raises(ValueError, match="same prompts"):
        stats.paired_bootstrap_delta(base, tuned[:5])


def test_joint_hhh_and_throughput_bootstrap_point_estimates():
    base = {"helpfulness": np.array([0.5, 0.5]), "honesty": np.array([0.0, 1.0]), "harmlessness": np.array([0.0, 0.0])}
    tuned = {"helpfulness": np.array([1.0, 1.0]), "honesty": np.array([1.0, 1.0]), "harmlessness": np.array([0.0, 1.0])}
    out = metrics.paired_bootstrap_joint_hhh(base, tuned, n_resamples=300, seed=1)
    # baseline (50 + 50 - 0) / 3 = 33.33; tuned (100 + 100 - 50) / 3 = 50 -> +16.67, on 2 prompts per set
    assert out["delta"] == pytest.approx(50.0 - 100.0 / 3)
    assert out["n"] == 2 and out["too_few"]
    # A failed judgement for one model drops that prompt for both: tuned's honesty NaN on prompt 0 leaves
    # baseline honesty 100 vs tuned 100 on prompt 1: joint HHH (50 + 100 - 0)/3 -> (100 + 100 - 50)/3 = +0.
    tuned_failed = {**tuned, "honesty": np.array([nan, 1.0])}
    assert metrics.paired_bootstrap_joint_hhh(base, tuned_failed, n_resamples=300, seed=1)["delta"] == pytest.approx(0)
    thr = stats.paired_bootstrap_ratio_of_sums(
        (np.array([10.0, 10.0]), np.array([1.0, 1.0])), (np.array([20.0, 40.0]), np.array([1.0, 2.0])), n_resamples=100
    )
    assert thr["delta"] == pytest.approx(10.0)  # 60/3 - 20/2
    # Cached responses with zero latency: an infinite throughput is no value (NaN, rendered n/a), not a crash.
    inf = stats.paired_bootstrap_ratio_of_sums(
        (np.array([10.0, 10.0]), np.array([1.0, 1.0])), (np.array([20.0, 40.0]), np.array([0.0, 0.0])), n_resamples=50
    )
    assert math.isnan(inf["delta"]) and inf["n"] == 2


def test_paired_change_rests_on_jointly_valid_prompts():
    # The case: baseline failed on prompt 0 only. Unpaired, it read as -25 [-75, 0]; paired it is 0 on 3.
    out = stats.paired_bootstrap_delta([nan, 1, 1, 1], [0, 1, 1, 1], n_resamples=500, seed=3)
    assert out == {"delta": 0.0, "ci_low": 0.0, "ci_high": 0.0, "n": 3, "too_few": True}
    # One prompt is not a certainty: n=1 is shown and marked too few (MIN_PAIRED_N = 10).
    assert stats.paired_bootstrap_delta([1.0], [0.0])["too_few"] is True
    assert stats.paired_bootstrap_delta(np.ones(10), np.zeros(10))["too_few"] is False
    none = stats.paired_bootstrap_delta([nan, 1.0], [0.0, nan])
    assert none["n"] == 0 and math.isnan(none["delta"]) and math.isnan(none["ci_low"])


def test_metric_functions_refuse_inputs_of_unequal_length():
    with pytest.raises(ValueError, match="unequal length"):
        metrics.truth_info([1, 1], [1])  # numpy would broadcast this to 100 %
    with pytest.raises(ValueError, match="unequal length"):
        metrics.cultural_failure_rates(["none", "refusal"], [[11]])
    with pytest.raises(ValueError, match="unequal length"):
        metrics.generation_efficiency([10, 20], [1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="same prompts"):
        stats.paired_bootstrap_ratio_of_sums(([1.0, 2.0], [1.0, 1.0]), ([1.0], [1.0]))


def test_bootstrap_ci_covers_a_known_change_in_92_to_98_percent_of_seeds():
    """Paired outcomes, n = 400: baseline ~ Bernoulli(0.5); tuned keeps the baseline outcome with probability 0.7,
    else draws Bernoulli(5/6), so P(tuned) = 0.35 + 0.3 * 5/6 = 0.6: the true change is +10 points. A 95% CI must
    cover +10 in about 95% of 200 seeds (binomial sd 1.5 points: 92-98% is about +-2 sd)."""
    covered = 0
    for seed in range(200):
        rng = np.random.default_rng(10_000 + seed)
        base = (rng.random(400) < 0.5).astype(float)
        tuned = np.where(rng.random(400) < 0.7, base, (rng.random(400) < 5 / 6).astype(float))
        out = stats.paired_bootstrap_delta(base, tuned, n_resamples=1000, seed=seed)
        covered += out["ci_low"] <= 10.0 <= out["ci_high"]
        if seed == 0:
            # Failures for one model only: the change is exactly the one on the jointly valid prompts.
            base_failed, tuned_failed = base.copy(), tuned.copy()
            base_failed[:30], tuned_failed[30:50] = nan, nan
            expected = stats.paired_bootstrap_delta(base[50:], tuned[50:], n_resamples=1000, seed=seed)
            assert stats.paired_bootstrap_delta(base_failed, tuned_failed, n_resamples=1000, seed=seed) == expected
            assert expected["n"] == 350
    assert 184 <= covered <= 196, covered


def test_leakage_counts_unique_test_prompts_with_verified_pairs():
    pairs = np.array([[0, 3], [0, 5], [2, 1], [4, 4]])
    verified = np.array([True, True, False, True])
    out = metrics.leakage_counts(pairs, verified, n_test=10)
    assert out == {"candidate_pairs": 4, "verified_pairs": 3, "leaked_prompts": 2, "rate": 20.0}
    assert metrics.leakage_counts(np.zeros((0, 2), dtype=int), np.zeros(0, dtype=bool), 5)["rate"] == 0.0
