"""Leakage-safe train/validation/test split: whole SimHash clusters go to one split.

Leakage is defined by SimHash distance alone (the paper's criterion), so rows are grouped by connected components over
ALL candidate pairs within tau, verified or not; a group never straddles two splits, which makes cross-split leakage
0 by construction. ``cross_split_leakage`` re-checks any DatasetDict from scratch.

Stratification: a group belongs to the first subdomain of its first row; groups of each subdomain are shuffled with
the seed, laid end to end, and cut at the 80% and 90% marks of that subdomain's rows (a group goes where its middle
falls). Subdomains with fewer than
``MIN_STRATUM_ROWS`` rows are too small to split 80/10/10 and are pooled into one stratum.
"""

from collections import Counter

import numpy as np
from datasets import Dataset, DatasetDict, concatenate_datasets

from data_pipeline.dedup import DedupConfig, clusters, fingerprint, near_duplicate_pairs

SPLIT_NAMES = ("train", "validation", "test")
MIN_STRATUM_ROWS = 10
POOLED_STRATUM = -1


def _strata(first_subdomains: np.ndarray) -> np.ndarray:
    counts = Counter(first_subdomains.tolist())
    small = np.array([counts[s] < MIN_STRATUM_ROWS for s in first_subdomains.tolist()], dtype=bool)
    return np.where(small, POOLED_STRATUM, first_subdomains)


def assign_splits(labels: np.ndarray, strata: np.ndarray, fractions, seed: int) -> np.ndarray:
    """Split index (0, 1, 2) per row; rows with one cluster label always share a split."""
    rng = np.random.default_rng(seed)
    roots, sizes = np.unique(labels, return_counts=True)  # a label is its cluster's smallest row index
    cluster_stratum = strata[roots]
    cluster_split = np.empty(len(roots), dtype=np.int64)
    bounds = np.cumsum(fractions)[:-1]
    for stratum in np.unique(cluster_stratum):
        members = np.flatnonzero(cluster_stratum == stratum)
        members = members[rng.permutation(len(members))]
        # lay the shuffled clusters end to end; each goes to the split its midpoint falls in
        ends = np.cumsum(sizes[members])
        midpoints = (ends - sizes[members] / 2) / ends[-1]
        cluster_split[members] = np.searchsorted(bounds, midpoints, side="right")
    return cluster_split[np.searchsorted(roots, labels)]


def split_dataset(ds: Dataset, cfg: DedupConfig, fractions=(0.8, 0.1, 0.1), seed: int = 42) -> DatasetDict:
    """train/validation/test by ``fractions``, stratified by first subdomain, whole SimHash clusters per split."""
    if len(fractions) != 3 or min(fractions) < 0 or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    if len(ds) == 0:
        return DatasetDict({name: ds for name in SPLIT_NAMES})
    labels = clusters(len(ds), near_duplicate_pairs(fingerprint(ds["prompt"][:]), cfg.tau))
    first = np.array([s[0] if len(s) else -1 for s in ds["subdomains"][:]], dtype=np.int64)
    split_of_row = assign_splits(labels, _strata(first), fractions, seed)
    return DatasetDict({name: ds.select(np.flatnonzero(split_of_row == k)) for k, name in enumerate(SPLIT_NAMES)})


def cross_split_leakage(dsd: DatasetDict, cfg: DedupConfig) -> dict:
    """Pairs of rows within tau (SimHash, unverified) that sit in different splits, and the share of rows involved."""
    names = [name for name in dsd if len(dsd[name])]
    if not names:
        return {"pairs": 0, "rate": 0.0, "rows": 0, "rows_involved": 0, "by_split_pair": {}, "tau": cfg.tau}
    combined = concatenate_datasets([dsd[name].select_columns(["prompt"]) for name in names])
    split_of_row = np.repeat(np.arange(len(names)), [len(dsd[name]) for name in names])
    pairs = near_duplicate_pairs(fingerprint(combined["prompt"][:]), cfg.tau)
    crossing = pairs[split_of_row[pairs[:, 0]] != split_of_row[pairs[:, 1]]]
    by_pair = Counter("/".join(sorted((names[split_of_row[a]], names[split_of_row[b]]))) for a, b in crossing.tolist())
    involved = len(np.unique(crossing))
    return {
        "pairs": len(crossing),
        "rate": involved / len(combined),
        "rows": len(combined),
        "rows_involved": involved,
        "by_split_pair": dict(sorted(by_pair.items())),
        "tau": cfg.tau,
    }
