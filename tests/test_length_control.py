"""The length-controlled win rate (eval/hhh/length_control.py) against alpaca_eval's own implementation, and the two
properties the LC win rate exists for.

The annotations are synthetic and deterministic (no random generator, so the library run and this test build the
same arrays): 805 prompts with reference and answer lengths from sines, a scripted judge that prefers the longer
answer (a tanh of the length difference) and harder instructions less, judged in both orders (scores 0, 0.5, 1), and
AlpacaEval's df_gamed.csv stand-in (two length-gamed baselines, 805 rows each, and the instruction difficulties).

LIBRARY holds ``alpaca_eval.metrics.glm_winrate.get_length_controlled_winrate`` on the same annotations, computed
once with alpaca-eval 0.6.6 (its wheel beside this repo's pinned stack, scikit-learn 1.9.1, plus patsy 1.0.3, fire
0.7.1, termcolor, in a scratch venv), ``hf_hub_download`` pointed at the df_gamed.csv these rows make, annotations as
a DataFrame with ``preference = 1 + score``, ``output_1`` / ``output_2`` strings of the reference / answer lengths,
``save_weights_dir=None``, for ``glm_name`` "length_controlled_v1" and "length_controlled_minimal".
"""

import math

import numpy as np
import pytest

from eval.hhh import length_control as lc

PHI, ROOT2 = (math.sqrt(5) - 1) / 2, math.sqrt(2) - 1
N = 805

# (answers longer by, glm_name) -> (raw win rate, LC win rate) as alpaca_eval 0.6.6 printed them.
LIBRARY = {
    (0.0, "length_controlled_v1"): (53.66459627329192, 54.09604634220354),
    (0.0, "length_controlled_minimal"): (53.66459627329192, 54.12699151125627),
    (300.0, "length_controlled_v1"): (67.82608695652173, 56.734939818563504),
    (300.0, "length_controlled_minimal"): (67.82608695652173, 56.91380540860118),
}


def synthetic(longer: float = 0.0):
    """(scores, answer chars, reference chars, instruction difficulty) of one model; ``longer`` pads every answer."""
    i = np.arange(N)
    reference = np.round(900 + 500 * np.sin(i))
    answer = np.round(np.maximum(20, reference + longer + 450 * np.sin(2.3 * i + 1)))
    difficulty = 1.2 * np.sin(0.7 * i + 0.2)
    prefers_model = 1 / (1 + np.exp(-(0.2 + 1.4 * np.tanh((answer - reference) / 450) - 0.6 * difficulty)))
    first = ((i * PHI) % 1 < prefers_model).astype(float)  # the judge's verdict with the model's answer as A
    second = ((i * ROOT2 + 0.5) % 1 < prefers_model).astype(float)  # ... and as B
    return (first + second) / 2, answer, reference, difficulty


def gamed(difficulty: np.ndarray) -> np.ndarray:
    """df_gamed.csv's gamed rows: (preference, std_delta_len, instruction_difficulty), verbose then concise."""
    i = np.arange(N)
    rows = []
    for sign in (-1.0, 1.0):
        std_delta_len = sign * (0.4 + 0.6 * np.abs(np.sin(1.3 * i)))
        preference = 1 / (1 + np.exp(-(-1.2 * np.tanh(std_delta_len) - 0.5 * difficulty)))
        rows.append(np.column_stack([preference, std_delta_len, difficulty]))
    return np.concatenate(rows)


@pytest.mark.parametrize("longer,glm_name", list(LIBRARY))
def test_reproduces_alpaca_evals_glm_winrate(longer, glm_name):
    scores, answer, reference, difficulty = synthetic(longer)
    glm = lc.GlmData(difficulty, gamed(difficulty)) if glm_name == "length_controlled_v1" else None
    raw, expected = LIBRARY[(longer, glm_name)]
    assert 100 * scores.mean() == pytest.approx(raw, abs=1e-9)
    # Within 0.02 points: the library picks an L1 penalty by cross-validation, we fit with a ridge of 1e-4.
    assert lc.lc_win_rate(lc.Annotations(scores, answer, reference, np.arange(N)), glm) == pytest.approx(
        expected, abs=0.02
    )


def test_equal_lengths_give_the_raw_win_rate():
    scores, _, reference, difficulty = synthetic()
    glm = lc.GlmData(difficulty, np.empty((0, 3)))
    same = lc.Annotations(scores, reference.copy(), reference, np.arange(N))
    # No length difference to control for: the fitted mean of a logistic model with its own term is the mean label.
    assert lc.lc_win_rate(same, glm) == pytest.approx(100 * scores.mean(), abs=1e-3)
    assert lc.lc_win_rate(lc.Annotations(scores, reference + 7, reference)) == pytest.approx(100 * scores.mean(), 1e-6)


def test_a_model_that_only_gets_longer_keeps_its_raw_gain_and_loses_most_of_it_under_lc():
    base, tuned = synthetic(0.0), synthetic(300.0)  # same content, every tuned answer 300 characters longer
    annotations = [lc.Annotations(s, a, r) for s, a, r, _ in (base, tuned)]
    raw = 100 * (tuned[0].mean() - base[0].mean())
    change = lc.paired_lc_delta(*annotations, glm=None, n_resamples=300, seed=0)
    assert raw == pytest.approx(67.826 - 53.665, abs=1e-3)  # +14.2 points from length alone
    # LC keeps under a quarter of it (the library: 56.914 - 54.127 = +2.79), and the change has its CI and n.
    assert change["delta"] == pytest.approx(56.91380540860118 - 54.12699151125627, abs=0.03)
    assert change["delta"] < raw / 4 and change["ci_low"] < change["delta"] < change["ci_high"]
    assert change["n"] == N


def test_failed_judgements_are_left_out_and_separated_verdicts_stay_finite():
    scores, answer, reference, _ = synthetic()
    scores = scores.copy()
    scores[:5] = np.nan
    assert math.isfinite(lc.lc_win_rate(lc.Annotations(scores, answer, reference)))
    # A judge that always prefers the longer answer separates the data perfectly: the ridge keeps the fit finite.
    longer_wins = (answer > reference).astype(float)
    assert 0.0 <= lc.lc_win_rate(lc.Annotations(longer_wins, answer, reference)) <= 100.0
    # Every verdict a loss (or a win): nothing to attribute to length, the LC win rate is the raw 0 (or 100).
    for verdict in (0.0, 1.0):
        assert lc.lc_win_rate(lc.Annotations(np.full(N, verdict), answer, reference)) == 100 * verdict


def test_df_gamed_csv_is_read_and_checked(tmp_path):
    path = tmp_path / "df_gamed.csv"
    path.write_text(
        "model,index,preference,std_delta_len,instruction_difficulty,not_gamed_baseline\n"
        "gpt4_1106_preview_verbose,0,0.7,-0.5,0.25,False\n"
        "gpt4_1106_preview_verbose,1,0.4,-1.5,-0.5,False\n"
        "gpt4_1106_preview_concise,0,0.3,0.5,0.25,False\n"
    )
    data = lc.read_glm_data(str(path))
    assert data.difficulty.tolist() == [0.25, -0.5] and data.gamed.shape == (3, 3)
    path.write_text("model,index,preference\nx,0,0.5\n")
    with pytest.raises(ValueError, match=r"df_gamed.csv:1: field 'std_delta_len': column missing"):
        lc.read_glm_data(str(path))
