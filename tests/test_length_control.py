"""The length-controlled win rate (eval/hhh/length_control.py) against alpaca_eval's own implementation, df_gamed.csv
(eval/hhh/length_data.py), and the two properties the LC win rate exists for.

The verdicts are tests/reference/lc_cases.py's (deterministic, no random generator, so the library run and this test
build the same arrays). LIBRARY and EDGE_LIBRARY hold ``alpaca_eval.metrics.glm_winrate.get_length_controlled_winrate``
(alpaca-eval 0.6.6, scikit-learn 1.9.1) on them as printed by ``python -m tests.reference.alpaca_eval_lc`` (the script
says how to run it in a scratch venv; its hub download returns lc_cases' df_gamed.csv stand-in).
"""

import json
import math

import numpy as np
import pytest
import yaml

from eval.config import parse_config
from eval.hhh import length_control as lc
from eval.hhh import length_data
from tests.reference import lc_cases

# (verdicts, answers longer by, first n prompts, GLM) -> (raw win rate, LC win rate) as alpaca_eval printed them.
LIBRARY = {
    ("discrete", 0.0, 20, "length_controlled_minimal"): (52.5, 50.0),
    ("discrete", 0.0, 20, "length_controlled_v1"): (52.5, 49.35706537136582),
    ("discrete", 0.0, 50, "length_controlled_minimal"): (54.0, 54.02486170004111),
    ("discrete", 0.0, 50, "length_controlled_v1"): (54.0, 54.08420734077287),
    ("discrete", 0.0, 100, "length_controlled_minimal"): (53.5, 53.60658191586787),
    ("discrete", 0.0, 100, "length_controlled_v1"): (53.5, 53.666534651933304),
    ("discrete", 0.0, 400, "length_controlled_minimal"): (53.75, 54.162981627635375),
    ("discrete", 0.0, 400, "length_controlled_v1"): (53.75, 54.15195790765549),
    ("discrete", 0.0, 805, "length_controlled_minimal"): (53.66459627329192, 54.12699151125627),
    ("discrete", 0.0, 805, "length_controlled_v1"): (53.66459627329192, 54.09604634220354),
    ("discrete", 300.0, 20, "length_controlled_minimal"): (67.5, 50.0),
    ("discrete", 300.0, 20, "length_controlled_v1"): (67.5, 49.44135739662568),
    ("discrete", 300.0, 50, "length_controlled_minimal"): (68.0, 57.980438554363126),
    ("discrete", 300.0, 50, "length_controlled_v1"): (68.0, 56.369572298404606),
    ("discrete", 300.0, 100, "length_controlled_minimal"): (69.5, 62.10761619218565),
    ("discrete", 300.0, 100, "length_controlled_v1"): (69.5, 59.11159523347025),
    ("discrete", 300.0, 400, "length_controlled_minimal"): (67.875, 58.06349989811848),
    ("discrete", 300.0, 400, "length_controlled_v1"): (67.875, 57.35562150229223),
    ("discrete", 300.0, 805, "length_controlled_minimal"): (67.82608695652173, 56.91380540860118),
    ("discrete", 300.0, 805, "length_controlled_v1"): (67.82608695652173, 56.734939818563504),
    ("weighted", 0.0, 20, "length_controlled_minimal"): (55.31652789328272, 55.16981308875194),
    ("weighted", 0.0, 20, "length_controlled_v1"): (55.31652789328272, 55.15633414731143),
    ("weighted", 0.0, 50, "length_controlled_minimal"): (53.24265287143769, 53.35392370195504),
    ("weighted", 0.0, 50, "length_controlled_v1"): (53.24265287143769, 53.357057334464045),
    ("weighted", 0.0, 100, "length_controlled_minimal"): (53.785530776988274, 54.04692979588999),
    ("weighted", 0.0, 100, "length_controlled_v1"): (53.785530776988274, 54.07621613715109),
    ("weighted", 0.0, 400, "length_controlled_minimal"): (53.94602951026199, 54.38206020198268),
    ("weighted", 0.0, 400, "length_controlled_v1"): (53.94602951026199, 54.38174008992076),
    ("weighted", 0.0, 805, "length_controlled_minimal"): (53.91734131381121, 54.372444633235794),
    ("weighted", 0.0, 805, "length_controlled_v1"): (53.91734131381121, 54.358853224292226),
    ("weighted", 300.0, 20, "length_controlled_minimal"): (67.21305521542754, 55.370885210247586),
    ("weighted", 300.0, 20, "length_controlled_v1"): (67.21305521542754, 54.966635579706136),
    ("weighted", 300.0, 50, "length_controlled_minimal"): (65.60891794707116, 55.15468119479293),
    ("weighted", 300.0, 50, "length_controlled_v1"): (65.60891794707116, 53.56344280100479),
    ("weighted", 300.0, 100, "length_controlled_minimal"): (66.24787232738373, 56.37004305855831),
    ("weighted", 300.0, 100, "length_controlled_v1"): (66.24787232738373, 54.68921478329353),
    ("weighted", 300.0, 400, "length_controlled_minimal"): (66.05317124869555, 54.96456042491321),
    ("weighted", 300.0, 400, "length_controlled_v1"): (66.05317124869555, 54.61568269466386),
    ("weighted", 300.0, 805, "length_controlled_minimal"): (66.05684999998415, 55.0425039823362),
    ("weighted", 300.0, 805, "length_controlled_v1"): (66.05684999998415, 54.81055160076015),
}
EDGE_LIBRARY = {
    ("first_five_failed", "length_controlled_minimal"): (54.736842105263165, 54.96509952494788),
    ("first_five_failed", "length_controlled_v1"): (54.736842105263165, 55.06225629214535),
    ("longer_always_wins", "length_controlled_minimal"): (50.0, 9.104674962623946),
    ("longer_always_wins", "length_controlled_v1"): (50.0, 49.95225718625902),
    ("all_won", "length_controlled_minimal"): (100.0, 99.99986385137112),
    ("all_won", "length_controlled_v1"): (100.0, 99.99878740415097),
    ("all_lost", "length_controlled_minimal"): (0.0, 50.0),
    ("all_lost", "length_controlled_v1"): (0.0, 0.0012598374476079533),
}
IDS = [f"alpaca_eval-{i:04d}" for i in range(lc_cases.N)]


@pytest.fixture(scope="module")
def df_gamed(tmp_path_factory):
    path = tmp_path_factory.mktemp("lc") / "df_gamed.csv"
    lc_cases.write_df_gamed(path)
    return path


@pytest.fixture(scope="module")
def glm(df_gamed):
    return length_data.read_glm_data(str(df_gamed))


def project_lc(scores, answer, reference, glm_name, glm, index=None):
    data = glm if glm_name == "length_controlled_v1" else None
    ids = IDS[: len(scores)] if index is None else [IDS[i] for i in index]
    return lc.lc_win_rate(lc.annotations(scores, answer, reference, ids, data), data)


@pytest.mark.parametrize("kind,longer,n,glm_name", list(LIBRARY))
def test_equals_alpaca_evals_glm_winrate(kind, longer, n, glm_name, glm):
    scores, answer, reference = (a[:n] for a in lc_cases.synthetic(kind, longer))
    raw, expected = LIBRARY[(kind, longer, n, glm_name)]
    assert 100 * scores.mean() == pytest.approx(raw, abs=1e-9)
    # The same fit as the library's (its cross-validated L1 penalty through scikit-learn): equal to rounding. The old
    # fixed ridge gave 70.28 for the library's 50.00 at 20 prompts (answers 300 characters longer, minimal GLM).
    assert project_lc(scores, answer, reference, glm_name, glm) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "case,glm_name", [key for key in EDGE_LIBRARY if key[0] in ("first_five_failed", "longer_always_wins")]
)
def test_failed_judgements_are_left_out_and_separated_verdicts_give_the_librarys_value(case, glm_name, glm):
    scores, answer, reference, index = lc_cases.edge_cases()[case]
    expected = EDGE_LIBRARY[(case, glm_name)][1]
    assert project_lc(scores, answer, reference, glm_name, glm, index) == pytest.approx(expected, abs=1e-6)
    if case == "first_five_failed":  # the same prompts with their 5 failed judgements (NaN) in place: left out
        full, answer, reference = (a[:100] for a in lc_cases.synthetic())
        failed = np.where(np.arange(100) < 5, np.nan, full)
        assert project_lc(failed, answer, reference, glm_name, glm) == pytest.approx(expected, abs=1e-6)


def test_equal_lengths_and_unanimous_verdicts_give_the_raw_win_rate(glm):
    scores, _, reference = lc_cases.synthetic()
    same = lc.annotations(scores, reference.copy(), reference, IDS, glm)
    # No length difference to control for (the library divides by sd 0): the length term is 0, and the fitted mean of
    # a logistic model with its own term is (up to its small L1 penalty) the mean label.
    assert lc.lc_win_rate(same, glm) == pytest.approx(100 * scores.mean(), abs=0.05)
    assert lc.lc_win_rate(lc.Annotations(scores, reference + 7, reference)) == pytest.approx(100 * scores.mean(), 1e-3)
    # Every verdict a loss (or a win): the raw 0 (or 100). The library's GLM has no optimum there and returns 50.0
    # for 100 losses with the minimal GLM, 0.0013 with v1, 99.9999 / 99.9988 for 100 wins (EDGE_LIBRARY).
    for case, verdict in (("all_lost", 0.0), ("all_won", 100.0)):
        scores, answer, reference, _ = lc_cases.edge_cases()[case]
        for glm_name in lc_cases.GLMS:
            assert project_lc(scores, answer, reference, glm_name, glm) == verdict


def test_a_model_that_only_gets_longer_keeps_its_raw_gain_and_loses_most_of_it_under_lc():
    base, tuned = lc_cases.synthetic("discrete", 0.0), lc_cases.synthetic("discrete", 300.0)
    annotations = [lc.Annotations(*model) for model in (base, tuned)]
    raw = 100 * (tuned[0].mean() - base[0].mean())
    change = lc.paired_lc_delta(lc.paired_draws(*annotations, None), *annotations, n_resamples=100, seed=0)
    assert raw == pytest.approx(67.826 - 53.665, abs=1e-3)  # +14.2 points from length alone
    # LC keeps under a quarter of it (the library: 56.914 - 54.127 = +2.79), and the change has its CI and n.
    library = LIBRARY[("discrete", 300.0, 805, "length_controlled_minimal")][1]
    assert change["delta"] == pytest.approx(library - LIBRARY[("discrete", 0.0, 805, "length_controlled_minimal")][1])
    assert change["delta"] < raw / 4 and change["ci_low"] < change["delta"] < change["ci_high"]
    assert change["n"] == lc_cases.N


def test_the_penalty_is_chosen_once_and_reused_by_every_refit(monkeypatch):
    scores, answer, reference = (a[:100] for a in lc_cases.synthetic("discrete", 300.0))
    model = lc.Annotations(scores, answer, reference)
    chosen, refits = [], []
    choose, refit = lc.choose_penalty, lc.refit
    monkeypatch.setattr(lc, "choose_penalty", lambda design: chosen.append(choose(design)) or chosen[-1])
    monkeypatch.setattr(lc, "refit", lambda design, c, counts: refits.append(c) or refit(design, c, counts))
    idx = np.random.default_rng(0).integers(0, 100, size=(20, 100))
    draws = lc.paired_draws(model, model, None)
    point, _ = draws(np.ones(100, bool), idx)
    assert draws(np.ones(100, bool), idx)[0] == point  # the second caller (joint HHH) gets the same fit
    assert len(chosen) == 2 and len(refits) == 2 * 20  # one cross-validation per model, then 20 refits each
    assert set(refits) == {chosen[0][0]}
    # A refit on all the prompts at that penalty is the cross-validated fit itself.
    design = lc._Design(model, None, np.ones(100, bool))
    assert refit(design, chosen[0][0], np.ones(100)) == pytest.approx(chosen[0][1], abs=1e-9)


def test_too_few_prompts_for_the_folds_give_nan():
    scores, answer, reference = (a[:4] for a in lc_cases.synthetic())
    assert math.isnan(lc.lc_win_rate(lc.Annotations(scores, answer, reference)))


def test_df_gamed_csv_is_read_as_the_library_reads_it(df_gamed, glm):
    assert glm.difficulty.shape == (lc_cases.N,) and glm.gamed.shape == (2 * lc_cases.N, 4)
    assert glm.difficulty == pytest.approx(lc_cases.difficulty(), abs=1e-12)
    first = lc_cases.gamed_rows()[0]
    assert glm.gamed[0].tolist() == pytest.approx([first[2], first[3], first[4], 0.0])


@pytest.mark.parametrize(
    "text,error",
    [
        ("model,index,preference\nx,0,0.5\n", r":1: field 'std_delta_len': column missing"),
        ("{h}\nv,0,0.7,-0.5,0.25,False\nv,1,0.4,-1.5,x,False\n", r":3: field 'instruction_difficulty': not a number"),
        ("{h}\nv,0,1.7,-0.5,0.25,False\n", r":2: field 'preference': 1.7 is outside 0..1"),
        ("{h}\nv,0,0.7,-0.5,0.25,maybe\n", r":2: field 'not_gamed_baseline': expected True or False"),
        ("{h}\nv,1,0.7,-0.5,0.25,False\n", r":2: field 'index': 1 where instruction 0 comes next"),
        ("{h}\n", r":2: field '<row>': no rows"),
    ],
)
def test_df_gamed_csv_errors_name_file_line_and_field(tmp_path, text, error):
    path = tmp_path / "df_gamed.csv"
    path.write_text(text.format(h=",".join(length_data.FIELDS)))
    with pytest.raises(ValueError, match=r"df_gamed\.csv" + error):
        length_data.read_glm_data(str(path))


def write_eval_config(tmp_path, length_control_data: str) -> str:
    alpaca = tmp_path / "alpaca_eval_gpt4_baseline.json"
    rows = [{"instruction": f"Say {i}.", "output": "x" * (10 + i), "generator": "gpt4_1106_preview"} for i in range(3)]
    alpaca.write_text(json.dumps(rows))
    config = {
        "models": [{"name": "m", "model": "some/model"}],
        "judges": {"default": {"model": "judge"}},
        "helpfulness": str(alpaca),
        "length_control_data": length_control_data,
        "length_control_revision": "0123abc",
    }
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_config_to_file_to_instruction_index_to_difficulty(tmp_path, df_gamed, monkeypatch):
    """length_control_data as a local file and as the hub id: the same df_gamed.csv, each AlpacaEval prompt's id
    mapped to its instruction index and that index's published difficulty, and the v1 GLM named."""
    from eval.hhh.testsets import load_hhh_set

    downloads = []

    def fake_download(**kwargs):
        downloads.append(kwargs)
        return str(df_gamed)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", fake_download)
    for source in (str(df_gamed), "tatsu-lab/alpaca_eval"):
        cfg = parse_config(["--config", write_eval_config(tmp_path, source)])
        data = length_data.glm_data_of(cfg)
        helpful = load_hhh_set("helpfulness", cfg.helpfulness)
        model = lc.annotations([1.0, 0.0, 0.5], [5, 40, 12], [len(r) for r in helpful["reference"]], helpful["id"],
                               data)  # fmt: skip
        assert list(helpful["id"]) == ["alpaca_eval-0000", "alpaca_eval-0001", "alpaca_eval-0002"]
        assert model.instruction_index.tolist() == [0, 1, 2]
        assert data.difficulty[model.instruction_index] == pytest.approx(lc_cases.difficulty()[:3], abs=1e-12)
        assert lc.glm_name(data) == "length_controlled_v1"
    assert downloads == [{"repo_id": "tatsu-lab/alpaca_eval", "filename": "df_gamed.csv", "repo_type": "dataset",
                          "revision": "0123abc"}]  # fmt: skip
