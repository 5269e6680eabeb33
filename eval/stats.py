"""Statistics every room of the eval shares: means over prompts with failed values left out, and baseline -> tuned
changes with paired bootstrap 95% CIs (HHH metrics, held-out scores, benchmark accuracies, efficiency).

Per-prompt values are float arrays where NaN marks a prompt whose value failed (a judgement that failed after
retries): it is left out of the mean (never replaced by a made-up score) and counted separately by the caller.
With k samples per prompt, :func:`prompt_means` averages a prompt's samples first, and the bootstrap resamples
prompts (never single samples), so k samples of one prompt are never counted as k independent prompts.
"""

import warnings
from collections.abc import Callable, Sequence

import numpy as np

Stat = Callable[[np.ndarray], np.ndarray]  # (B, n) resampled per-prompt values -> (B,) statistic


def mean_percent(values: Sequence[float] | np.ndarray) -> float:
    """100 * mean over prompts with a valid judgement (NaN = failed judgement, excluded and counted elsewhere)."""
    arr = np.asarray(values, dtype=float)
    valid = arr[~np.isnan(arr)]
    return float(100.0 * valid.mean()) if valid.size else float("nan")


def same_length(**arrays: Sequence) -> None:
    """Raise unless every per-prompt input has the same length (numpy would broadcast a length-1 array silently)."""
    lengths = {name: len(values) for name, values in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"per-prompt inputs of unequal length: {lengths}")


def prompt_means(values: Sequence[float] | np.ndarray, samples_per_prompt: int) -> np.ndarray:
    """Per-prompt mean over its k consecutive samples (prompt-major order), NaN samples left out; NaN if all are."""
    arr = np.asarray(values, dtype=float)
    if arr.size % samples_per_prompt:
        raise ValueError(f"{arr.size} values are not a whole number of prompts x {samples_per_prompt} samples")
    with warnings.catch_warnings():  # a prompt whose every sample failed its judgement stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(arr.reshape(-1, samples_per_prompt), axis=1)


def mean_stat(values: np.ndarray) -> np.ndarray:
    """Bootstrap statistic: plain mean over the prompt axis (token counts, latency)."""
    return values.mean(axis=-1)


def nanmean_percent_stat(values: np.ndarray) -> np.ndarray:
    """Bootstrap statistic: 100 * nanmean over the prompt axis of a (B, n) resample."""
    with warnings.catch_warnings():  # a resample of only failed judgements is NaN, and excluded from the CI
        warnings.simplefilter("ignore", RuntimeWarning)
        return 100.0 * np.nanmean(values, axis=-1)


# A change resting on fewer jointly valid prompts than this is shown but marked "too few prompts to call".
MIN_PAIRED_N = 10


def jointly_valid(*per_prompt: Sequence[float] | np.ndarray) -> np.ndarray:
    """Boolean mask of prompts whose value is finite for every model (the prompts a paired change can rest on)."""
    arrays = [np.asarray(a, dtype=float) for a in per_prompt]
    lengths = {a.shape for a in arrays}
    if len(lengths) != 1:
        raise ValueError(f"paired values need the same prompts: shapes {sorted(lengths)}")
    return np.logical_and.reduce([np.isfinite(a) for a in arrays])


def paired_bootstrap_delta(
    baseline: Sequence[float],
    tuned: Sequence[float],
    statistic: Stat = nanmean_percent_stat,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict:
    """Change tuned − baseline with a paired percentile bootstrap 95% CI, over the jointly valid prompts.

    Only prompts with a finite value for both models enter (a prompt whose judgement failed for one model would
    otherwise make the two means rest on different prompts); ``n`` says how many. The same resampled prompt indices
    are applied to both models (paired: prompt difficulty cancels); the CI is the 2.5th and 97.5th percentile of the
    resampled deltas. A fixed seed makes it deterministic. With n = 0 every field but ``n`` is NaN.
    Source: Efron & Tibshirani (1993), An Introduction to the Bootstrap, ch. 13 (percentile interval); paired
    resampling as in Koehn (2004), "Statistical significance tests for machine translation evaluation".
    """
    base = np.asarray(baseline, dtype=float)
    tune = np.asarray(tuned, dtype=float)
    valid = jointly_valid(base, tune)
    base, tune = base[valid], tune[valid]
    if not base.size:
        return delta_summary(float("nan"), np.array([]), 0)
    idx = np.random.default_rng(seed).integers(0, base.size, size=(n_resamples, base.size))
    deltas = statistic(tune[idx]) - statistic(base[idx])
    return delta_summary(float(statistic(tune[None])[0] - statistic(base[None])[0]), deltas, int(base.size))


def ratio_of_sums(numerator: np.ndarray, denominator: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """sum(numerator)/sum(denominator) over each row of resampled prompt indices (B, n) -> (B,)."""
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero denominator is an infinite ratio: n/a downstream
        return numerator[indices].sum(axis=-1) / denominator[indices].sum(axis=-1)


def paired_bootstrap_ratio_of_sums(
    baseline: tuple[Sequence[float], Sequence[float]],
    tuned: tuple[Sequence[float], Sequence[float]],
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict:
    """Change in a ratio of sums (tokens/s = tokens/latency; held-out NLL per token = NLL/tokens) with a paired
    bootstrap CI over the prompts where all four per-prompt values are finite. ``baseline`` and ``tuned`` are
    (numerator, denominator) per prompt. A ratio whose denominator sums to 0 is infinite: the change is then NaN."""
    arrays = [np.asarray(a, dtype=float) for a in (*baseline, *tuned)]
    valid = jointly_valid(*arrays)
    b_num, b_den, t_num, t_den = (a[valid] for a in arrays)
    n = int(valid.sum())
    if not n:
        return delta_summary(float("nan"), np.array([]), 0)
    everything = np.arange(n)[None]
    point = ratio_of_sums(t_num, t_den, everything)[0] - ratio_of_sums(b_num, b_den, everything)[0]
    idx = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))
    return delta_summary(point, ratio_of_sums(t_num, t_den, idx) - ratio_of_sums(b_num, b_den, idx), n)


def delta_summary(point: float, deltas: np.ndarray, n: int) -> dict:
    """{delta, ci_low, ci_high, n, too_few}: ``too_few`` marks a change resting on fewer than MIN_PAIRED_N prompts."""
    finite = deltas[np.isfinite(deltas)]
    low, high = np.percentile(finite, [2.5, 97.5]) if finite.size else (float("nan"), float("nan"))
    point = float(point) if np.isfinite(point) else float("nan")  # an infinite change is no value (n/a)
    return {"delta": point, "ci_low": float(low), "ci_high": float(high), "n": n, "too_few": n < MIN_PAIRED_N}
