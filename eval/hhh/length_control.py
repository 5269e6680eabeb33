"""Length-controlled win rate: AlpacaEval 2.0's answer to judges that prefer longer answers (Dubois et al., 2024,
"Length-Controlled AlpacaEval", arXiv 2404.04475; alpaca_eval.metrics.glm_winrate, GLM "length_controlled_v1").

Per model, a logistic GLM of the judge's preference for the model's answer over the reference answer on prompt i:

    logit P(model preferred) = θ + w_len · tanh(Δ_i / sd(Δ)) + w_diff · d_i

with Δ_i = len(reference_i) − len(answer_i) in characters (alpaca_eval's ``std_delta_len``; sd with ddof 1 over the
model's prompts), d_i the instruction's difficulty and θ the model's own term (``not_gamed_baseline``; there is no
separate intercept). The prompt's pairwise score (eval/hhh/metrics.py ``pairwise_score``: 1 won, 0 lost, ties half) is
the label, fitted as a probability with the log loss, as alpaca_eval does. With AlpacaEval's ``df_gamed.csv``
(instruction difficulties and the annotations of two length-gamed baselines), d_i is the published difficulty of the
instruction and the gamed baselines' annotations join the fit at weight λ/2 = 0.1 each (their θ feature is 0): the
regularisation toward the baseline of length_controlled_v1. Without that file (our own fixtures, any other prompt
set) the GLM has no difficulty term and no gamed rows: alpaca_eval's "length_controlled_minimal".

    LC win rate = 100 · mean_i σ(θ + w_diff · d_i)

the win rate the model would have if every answer were as long as the reference. If every answer is as long as its
reference (sd(Δ) = 0), the length term is 0 and the LC win rate equals the raw one (the fitted mean of a logistic
model with its own term equals the mean label); so it does when every verdict is the same (nothing to attribute to
length; the fit has no finite optimum then).

Fit. Newton's method on the (weighted) log loss with a ridge of 1e-4 (the weakest penalty alpaca_eval's L1
cross-validation tries is 1/C = 1e-4) so a fit whose verdicts are perfectly separated by length stays finite;
alpaca_eval chooses an L1 penalty by 5-fold cross-validation instead, which changes the LC win rate by well under
0.1 points on 805 prompts (tests/test_length_control.py reproduces the library's numbers). The bootstrap refits the
GLM on every resample of the prompts, so the CI carries the fit's uncertainty too.
"""

import csv
from dataclasses import dataclass

import numpy as np

from eval import stats

RIDGE = 1e-4
GAMED_WEIGHT = 0.2 / 2  # alpaca_eval: regularize_to_baseline_lambda / 2 (two gamed baselines)
GAMED_FIELDS = ("index", "preference", "std_delta_len", "instruction_difficulty", "not_gamed_baseline")


@dataclass(frozen=True)
class GlmData:
    """AlpacaEval's df_gamed.csv: per-instruction difficulty and the gamed baselines' annotations."""

    difficulty: np.ndarray  # by AlpacaEval instruction index (the row's position in alpaca_eval_gpt4_baseline.json)
    gamed: np.ndarray  # (rows, 3): preference in [0, 1], std_delta_len, instruction_difficulty


def read_glm_data(path: str) -> GlmData:
    """A local copy of ``df_gamed.csv`` from the tatsu-lab/alpaca_eval hub repo (what glm_winrate downloads)."""
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [f for f in GAMED_FIELDS if f not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}:1: field '{missing[0]}': column missing (expected alpaca_eval's df_gamed.csv)")
        rows = list(reader)
    if not rows:
        raise ValueError(f"{path}:2: field '<row>': no rows")
    difficulty: dict[int, float] = {}
    gamed = []
    for line, row in enumerate(rows, start=2):
        try:
            index, values = int(row["index"]), [float(row[f]) for f in GAMED_FIELDS[1:4]]
        except ValueError as err:
            raise ValueError(f"{path}:{line}: field '<row>': not a number ({err})") from None
        difficulty.setdefault(index, values[2])
        if row["not_gamed_baseline"].strip().lower() in ("false", "0"):
            gamed.append(values)
    indices = sorted(difficulty)
    if indices != list(range(len(indices))):
        raise ValueError(f"{path}: field 'index': expected instruction indices 0..n-1, got {len(indices)} values")
    return GlmData(np.array([difficulty[i] for i in indices]), np.array(gamed).reshape(-1, 3))


@dataclass(frozen=True)
class Annotations:
    """One model's helpfulness judgements: per-prompt score in [0, 1] (NaN: failed), answer and reference lengths
    in characters, and each prompt's AlpacaEval instruction index (None: no published difficulty)."""

    scores: np.ndarray
    answer_chars: np.ndarray
    reference_chars: np.ndarray
    instruction_index: np.ndarray | None = None


def lc_win_rate(model: Annotations, glm: GlmData | None = None) -> float:
    """The LC win rate (%) over the prompts with a valid judgement (module docstring)."""
    valid = np.isfinite(model.scores)
    if not valid.any():
        return float("nan")
    return float(_fitted_lc(model, glm, valid, np.arange(int(valid.sum()))[None])[0])


def lc_draws(model: Annotations, glm: GlmData | None, valid: np.ndarray, idx: np.ndarray) -> tuple[float, np.ndarray]:
    """(LC win rate on the ``valid`` prompts, LC win rate on each bootstrap resample ``idx`` (B, n_valid) of them)."""
    point = _fitted_lc(model, glm, valid, np.arange(int(valid.sum()))[None])[0]
    return float(point), _fitted_lc(model, glm, valid, idx)


def _fitted_lc(model: Annotations, glm: GlmData | None, valid: np.ndarray, idx: np.ndarray) -> np.ndarray:
    n = int(valid.sum())
    counts = np.zeros((idx.shape[0], n))
    np.add.at(counts, (np.arange(idx.shape[0])[:, None], idx), 1.0)
    delta = (model.reference_chars - model.answer_chars)[valid].astype(float)
    mean = (counts * delta).sum(1, keepdims=True) / counts.sum(1, keepdims=True)
    var = (counts * (delta - mean) ** 2).sum(1, keepdims=True) / np.maximum(counts.sum(1, keepdims=True) - 1, 1)
    sd = np.sqrt(var)
    length = np.where(sd > 0, np.tanh(delta / np.where(sd > 0, sd, 1.0)), 0.0)  # equal lengths: nothing to control
    own = np.ones_like(length)
    difficulty = np.zeros(n)
    if glm is not None and model.instruction_index is not None:
        difficulty = glm.difficulty[model.instruction_index[valid]]
    features = np.stack([length, np.broadcast_to(difficulty, length.shape), own], axis=-1)  # (B, n, 3)
    labels, weights = np.broadcast_to(model.scores[valid], length.shape), counts
    if glm is not None and len(glm.gamed):
        gamed = np.column_stack([np.tanh(glm.gamed[:, 1]), glm.gamed[:, 2], np.zeros(len(glm.gamed))])
        features = np.concatenate([features, np.broadcast_to(gamed, (len(idx), *gamed.shape))], axis=1)
        labels = np.concatenate([labels, np.broadcast_to(glm.gamed[:, 0], (len(idx), len(gamed)))], axis=1)
        weights = np.concatenate([weights, np.full((len(idx), len(gamed)), GAMED_WEIGHT)], axis=1)
    coef = fit_logistic(features, labels, weights)
    at_equal_length = 1.0 / (1.0 + np.exp(-(coef[:, 1:2] * difficulty + coef[:, 2:3])))  # (B, n)
    lc = 100.0 * (counts * at_equal_length).sum(1) / counts.sum(1)
    # Every drawn verdict the same (all lost, all won): nothing to attribute to length, and the GLM's own term has no
    # finite optimum (the ridge would leave it at an arbitrary 0.2% instead of 0%): the LC win rate is the raw one.
    drawn = np.where(counts > 0, model.scores[valid], np.nan)
    low, high = np.nanmin(drawn, axis=1), np.nanmax(drawn, axis=1)
    return np.where(low == high, 100.0 * low, lc)


def _loss(features, labels, weights, coef) -> np.ndarray:
    z = np.einsum("bmp,bp->bm", features, coef)
    nll = labels * np.logaddexp(0.0, -z) + (1.0 - labels) * np.logaddexp(0.0, z)
    return (weights * nll).sum(1) + 0.5 * RIDGE * (coef**2).sum(1)


def fit_logistic(features: np.ndarray, labels: np.ndarray, weights: np.ndarray, max_iter: int = 100) -> np.ndarray:
    """Coefficients (B, p) minimising the weighted log loss with probabilistic labels plus RIDGE/2·|coef|², one fit
    per leading index b (Newton steps, halved until the loss does not grow)."""
    batch, _, p = features.shape
    coef = np.zeros((batch, p))
    eye = RIDGE * np.eye(p)
    loss = _loss(features, labels, weights, coef)
    for _ in range(max_iter):
        mu = 1.0 / (1.0 + np.exp(-np.einsum("bmp,bp->bm", features, coef)))
        grad = np.einsum("bmp,bm->bp", features, weights * (mu - labels)) + RIDGE * coef
        hessian = np.einsum("bmp,bmq,bm->bpq", features, features, weights * mu * (1.0 - mu)) + eye
        step = np.linalg.solve(hessian, grad[..., None])[..., 0]
        scale = np.ones((batch, 1))
        for _ in range(30):  # halve the step of each fit whose loss would grow
            trial = _loss(features, labels, weights, coef - scale * step)
            worse = trial > loss + 1e-12 * np.abs(loss)
            if not worse.any():
                break
            scale[worse] /= 2
        coef = coef - scale * step
        loss = _loss(features, labels, weights, coef)
        if np.abs(scale * step).max() < 1e-10:
            break
    return coef


def annotations(scores: np.ndarray, answer_chars, reference_chars, ids=None, glm: GlmData | None = None):
    """Annotations of one model; with ``glm``, each prompt's AlpacaEval index read from its id ("alpaca_eval-0042")."""
    index = None
    if glm is not None and ids is not None:
        index = np.array([int(str(i).rsplit("-", 1)[1]) for i in ids])
        if index.max(initial=-1) >= len(glm.difficulty):
            raise ValueError(f"length_control_data: no difficulty for instruction {index.max()} (the file has "
                             f"{len(glm.difficulty)}): it is not the df_gamed.csv of this AlpacaEval set")  # fmt: skip
    return Annotations(np.asarray(scores, float), np.asarray(answer_chars, float), np.asarray(reference_chars, float),
                       index)  # fmt: skip


def glm_name(glm: GlmData | None) -> str:
    """alpaca_eval's name of the GLM that runs: with df_gamed.csv the published one, else the minimal one."""
    return "length_controlled_v1" if glm is not None else "length_controlled_minimal"


def glm_data_of(cfg) -> GlmData | None:
    """The config's ``length_control_data`` (AlpacaEval's df_gamed.csv), or None."""
    return read_glm_data(cfg.length_control_data) if cfg.length_control_data else None


def paired_lc_delta(base: Annotations, tuned: Annotations, glm: GlmData | None, n_resamples: int, seed: int) -> dict:
    """Change in LC win rate tuned − baseline with a paired bootstrap 95% CI over the jointly valid prompts: the same
    resampled prompts for both models, the GLM refitted on each resample (eval/hhh/metrics.py delta_summary)."""
    valid = np.isfinite(base.scores) & np.isfinite(tuned.scores)
    n = int(valid.sum())
    if not n:
        return stats.delta_summary(float("nan"), np.array([]), 0)
    idx = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))
    (point_base, point_tuned), (draws_base, draws_tuned) = paired_draws(base, tuned, glm)(valid, idx)
    return stats.delta_summary(point_tuned - point_base, draws_tuned - draws_base, n)


def paired_draws(base: Annotations, tuned: Annotations, glm: GlmData | None):
    """``helpfulness(valid, idx)`` for metrics.paired_bootstrap_joint_hhh: the LC win rates of both models."""

    def draws(valid: np.ndarray, idx: np.ndarray):
        (point_base, draws_base), (point_tuned, draws_tuned) = (lc_draws(m, glm, valid, idx) for m in (base, tuned))
        return (point_base, point_tuned), (draws_base, draws_tuned)

    return draws
