"""Length-controlled win rate exactly as AlpacaEval 2.0 computes it (Dubois et al., 2024, "Length-Controlled
AlpacaEval", arXiv 2404.04475; ``alpaca_eval.metrics.glm_winrate.get_length_controlled_winrate``, alpaca-eval 0.6.6).

Per model, a logistic GLM of the judge's preference for the model's answer over the reference answer on prompt i:

    logit P(model preferred) = w_len · tanh(Δ_i / sd(Δ)) + w_diff · d_i + θ

with Δ_i = len(reference_i) − len(answer_i) in characters (sd with ddof 1 over the model's prompts), d_i the
instruction's difficulty and θ the model's own term (``not_gamed_baseline``; no separate intercept). The label is the
prompt's preference in [0, 1] (eval/hhh/metrics.py: the pairwise score, 1 won, 0 lost, ties half, or the judge's
probability that the model's answer is better), fitted as a probability with the log loss. GLMs, by alpaca_eval's
names: with AlpacaEval's df_gamed.csv (eval/hhh/length_data.py), ``length_controlled_v1``: d_i is the published
difficulty and every row of the file joins the fit (the gamed baselines at weight λ/2 = 0.1 each, θ feature 0), the
regularisation toward the baseline; without it, ``length_controlled_minimal``: no difficulty term, no gamed rows.

    LC win rate = 100 · mean_i σ(w_diff · d_i + θ)

the win rate the model would have if every answer were as long as the reference.

Fit, as the library fits it (scikit-learn, the library it uses): each row twice, labelled 1 with weight p and 0 with
weight 1 − p (times the row's weight), and ``LogisticRegressionCV`` with an L1 penalty (liblinear, no intercept,
random_state 123) choosing C among 10 values from 1e-4 to 1e4 by 5-fold ``GroupKFold`` (a row's two copies in one
fold) on the continuous log loss. The design rows keep the library's order (df_gamed's rows, then the prompts).
Failed judgements are left out before the fit (the library is given the judged annotations only).

Bootstrap. The penalty C is chosen once, on the full set of jointly valid prompts, and reused by every refit: each
resample of the prompts refits the GLM at that C (``LogisticRegression``, resampled prompts as weights), so the CI
carries the fit's uncertainty but not a second cross-validation per resample.

Where the library has no answer, this module says so rather than imitate an artefact: every answer as long as its
reference (sd(Δ) = 0; the library divides by zero) gives a length term of 0; every verdict the same (all lost, all
won) gives the raw win rate (the GLM's own term has no finite optimum; the library returns 50.0 for 100 losses with
the minimal GLM, tests/test_length_control.py); fewer prompts than folds (5, with the minimal GLM) give NaN.
"""

import hashlib
import logging
from dataclasses import dataclass

import numpy as np

from eval import stats
from eval.hhh.length_data import GlmData, instruction_indices

log = logging.getLogger(__name__)
REGULARIZE_TO_BASELINE = 0.2  # length_controlled_v1's regularize_to_baseline_lambda (two gamed baselines: λ/2 each)
N_SPLITS = 5
LIBLINEAR = {"solver": "liblinear", "fit_intercept": False, "random_state": 123}  # with an L1 penalty (l1_ratio 1)


@dataclass(frozen=True)
class Annotations:
    """One model's helpfulness judgements: per-prompt preference in [0, 1] (NaN: failed), answer and reference
    lengths in characters, and each prompt's AlpacaEval instruction index (None: no published difficulty)."""

    scores: np.ndarray
    answer_chars: np.ndarray
    reference_chars: np.ndarray
    instruction_index: np.ndarray | None = None


def glm_name(glm: GlmData | None) -> str:
    """alpaca_eval's name of the GLM that runs: with df_gamed.csv the published one, else the minimal one."""
    return "length_controlled_v1" if glm is not None else "length_controlled_minimal"


def annotations(scores: np.ndarray, answer_chars, reference_chars, ids=None, glm: GlmData | None = None):
    """Annotations of one model; with ``glm``, each prompt's AlpacaEval index read from its id ("alpaca_eval-0042")."""
    index = instruction_indices(ids, glm) if glm is not None and ids is not None else None
    return Annotations(np.asarray(scores, float), np.asarray(answer_chars, float), np.asarray(reference_chars, float),
                       index)  # fmt: skip


class _Design:
    """The GLM's rows for one model on its ``valid`` prompts, in the library's order: df_gamed's rows, then the
    prompts. ``weights(counts)`` gives a (resampled) fit's row weights."""

    def __init__(self, model: Annotations, glm: GlmData | None, valid: np.ndarray):
        self.use_difficulty = glm is not None and model.instruction_index is not None
        n = int(valid.sum())
        self.delta = (model.reference_chars - model.answer_chars)[valid]
        self.labels = model.scores[valid]
        self.difficulty = glm.difficulty[model.instruction_index[valid]] if self.use_difficulty else np.zeros(n)
        gamed = glm.gamed if glm is not None else np.empty((0, 4))
        self.gamed_features = self._features(np.tanh(gamed[:, 1]), gamed[:, 2], gamed[:, 3])
        self.gamed_labels = gamed[:, 0]
        self.gamed_weights = np.where(gamed[:, 3] > 0, 1.0, REGULARIZE_TO_BASELINE / 2)

    def _features(self, length, difficulty, own) -> np.ndarray:
        columns = [length, difficulty, own] if self.use_difficulty else [length, own]
        return np.column_stack(columns)

    def fit_rows(self, counts: np.ndarray):
        """(X, y, sample weight, true probability, true weight, groups) of the duplicated rows, as glm_winrate's
        fit_LogisticRegressionCV builds them; ``counts``: how often each prompt is drawn (0: left out)."""
        drawn = counts > 0
        delta = self.delta[drawn]
        sd = np.sqrt(np.cov(delta, fweights=counts[drawn])) if counts.sum() > 1 else 0.0
        length = np.tanh(delta / sd) if sd > 0 else np.zeros(len(delta))  # equal lengths: nothing to control
        own = self._features(length, self.difficulty[drawn], np.ones(len(delta)))
        features = np.vstack([self.gamed_features, own])
        labels = np.concatenate([self.gamed_labels, self.labels[drawn]])
        weights = np.concatenate([self.gamed_weights, counts[drawn].astype(float)])
        x = np.vstack([features, features])
        y = np.concatenate([np.ones(len(labels)), np.zeros(len(labels))])
        true_prob = np.concatenate([labels, 1.0 - labels])
        true_weight = np.concatenate([weights, weights])
        groups = np.concatenate([np.arange(len(labels))] * 2)
        return x, y, true_prob * true_weight, true_prob, true_weight, groups

    def lc(self, coef: np.ndarray, counts: np.ndarray) -> float:
        """100 · the counts-weighted mean of σ(w_diff · d_i + θ): every answer as long as its reference."""
        at_equal_length = self._features(np.zeros(len(self.labels)), self.difficulty, np.ones(len(self.labels)))
        predicted = 1.0 / (1.0 + np.exp(-(at_equal_length @ coef)))
        return float(100.0 * (counts * predicted).sum() / counts.sum())


def continuous_log_loss(y_true, y_pred, true_prob, true_sample_weight=None) -> float:
    """glm_winrate's cross-validation score: the log loss against the probability labels (each row's two copies score
    alike), weighted by the rows' own weights, as a mean over the rows of the fold."""
    y_true = np.where(y_true == 1, true_prob, 1 - true_prob)
    y_pred = np.clip(y_pred, 1e-15, 1 - 1e-15)
    loss = y_true * np.log(y_pred) + (1 - y_true) * np.log(1 - y_pred)
    if true_sample_weight is not None:
        loss = loss * true_sample_weight
    return float(-np.mean(loss))


def choose_penalty(design: _Design) -> tuple[float, np.ndarray]:
    """(C, coefficients) of ``LogisticRegressionCV`` on every prompt once, as the library fits it (module docstring)."""
    import sklearn
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import make_scorer
    from sklearn.model_selection import GroupKFold

    x, y, weight, true_prob, true_weight, groups = design.fit_rows(np.ones(len(design.labels)))
    with sklearn.config_context(enable_metadata_routing=True):
        scorer = make_scorer(continuous_log_loss, response_method="predict_proba", greater_is_better=False)
        scorer = scorer.set_score_request(true_sample_weight=True, true_prob=True)
        model = LogisticRegressionCV(cv=GroupKFold(n_splits=N_SPLITS), scoring=scorer, l1_ratios=(1.0,),
                                     use_legacy_attributes=False, **LIBLINEAR)  # fmt: skip
        model.set_fit_request(sample_weight=True)
        model.fit(x, y, sample_weight=weight, groups=groups, true_sample_weight=true_weight, true_prob=true_prob)
    return float(np.ravel(model.C_)[0]), model.coef_[0]


def refit(design: _Design, c: float, counts: np.ndarray) -> np.ndarray:
    """Coefficients of the GLM at penalty ``c`` on a resample (``counts`` per prompt)."""
    from sklearn.linear_model import LogisticRegression

    x, y, weight, *_ = design.fit_rows(counts)
    keep = weight > 0  # rows of weight 0 add nothing to liblinear's objective
    return LogisticRegression(C=c, l1_ratio=1.0, **LIBLINEAR).fit(x[keep], y[keep], sample_weight=weight[keep]).coef_[0]


def lc_draws(model: Annotations, glm: GlmData | None, valid: np.ndarray, idx: np.ndarray) -> tuple[float, np.ndarray]:
    """(LC win rate on the ``valid`` prompts, LC win rate on each bootstrap resample ``idx`` (B, n_valid) of them),
    every resample refitted at the penalty chosen on the valid prompts."""
    design = _Design(model, glm, valid)
    n = len(design.labels)
    counts = np.zeros((idx.shape[0], n))
    np.add.at(counts, (np.arange(idx.shape[0])[:, None], idx), 1.0)
    if not n or (glm is None and n < N_SPLITS):  # GroupKFold needs a prompt per fold
        log.warning("LC win rate: %d judged prompts, fewer than the %d folds that choose its penalty", n, N_SPLITS)
        return float("nan"), np.full(idx.shape[0], np.nan)
    if np.all(design.labels == design.labels[0]):  # every verdict the same (module docstring)
        return 100.0 * float(design.labels[0]), np.full(idx.shape[0], 100.0 * design.labels[0])
    c, coef = choose_penalty(design)
    draws = np.empty(idx.shape[0])
    for b, drawn in enumerate(counts):
        labels = design.labels[drawn > 0]
        same = np.all(labels == labels[0])
        draws[b] = 100.0 * labels[0] if same else design.lc(refit(design, c, drawn), drawn)
    return design.lc(coef, np.ones(n)), draws


def lc_win_rate(model: Annotations, glm: GlmData | None = None) -> float:
    """The LC win rate (%) over the prompts with a valid judgement (module docstring)."""
    valid = np.isfinite(model.scores)
    return lc_draws(model, glm, valid, np.empty((0, int(valid.sum())), dtype=int))[0]


def paired_draws(base: Annotations, tuned: Annotations, glm: GlmData | None):
    """``helpfulness(valid, idx)`` for metrics.paired_bootstrap_joint_hhh and paired_lc_delta: the LC win rates of
    both models on the jointly valid prompts and on each resample. Both callers draw the same resamples (one seed),
    so each (valid, idx) is fitted once."""
    done: dict[str, tuple] = {}

    def draws(valid: np.ndarray, idx: np.ndarray):
        key = hashlib.sha256(valid.tobytes() + idx.tobytes()).hexdigest()
        if key not in done:
            (point_base, draws_base), (point_tuned, draws_tuned) = (lc_draws(m, glm, valid, idx) for m in (base, tuned))
            done[key] = (point_base, point_tuned), (draws_base, draws_tuned)
        return done[key]

    return draws


def paired_lc_delta(draws, base: Annotations, tuned: Annotations, n_resamples: int, seed: int) -> dict:
    """Change in LC win rate tuned − baseline with a paired bootstrap 95% CI over the jointly valid prompts: the same
    resampled prompts for both models (``draws``: paired_draws of the two), the GLM refitted on each resample."""
    valid = np.isfinite(base.scores) & np.isfinite(tuned.scores)
    n = int(valid.sum())
    if not n:
        return stats.delta_summary(float("nan"), np.array([]), 0)
    idx = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))
    (point_base, point_tuned), (draws_base, draws_tuned) = draws(valid, idx)
    return stats.delta_summary(point_tuned - point_base, draws_tuned - draws_base, n)
