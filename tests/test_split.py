"""Leakage-safe 80/10/10 splits: whole SimHash clusters per split, stratified, deterministic, re-checked."""

import numpy as np
import pytest
from datasets import DatasetDict

from benchmarks.dedup import synthetic_corpus
from data_pipeline.dedup import DedupConfig, fingerprint, near_duplicate_pairs
from data_pipeline.schema import make_row, rows_to_dataset
from data_pipeline.split import cross_split_leakage, split_dataset


@pytest.fixture(scope="module")
def corpus():
    """2,000 prompts (5% planted near-duplicates) over two big subdomains and a few rare ones."""
    texts, planted = synthetic_corpus(2000, seed=21, planted_fraction=0.05)
    subdomains = [[15] if i % 3 else [19, 15] for i in range(len(texts))]
    for i in range(5):
        subdomains[i * 7] = [5]  # a stratum too small to split on its own
    rows = [make_row(f"p{i:04d}", t, s, "test") for i, (t, s) in enumerate(zip(texts, subdomains, strict=True))]
    return rows_to_dataset(rows), planted


def test_split_fractions_determinism_and_seed(corpus):
    ds, _ = corpus
    cfg = DedupConfig()
    dsd = split_dataset(ds, cfg)
    sizes = {name: len(split) for name, split in dsd.items()}
    assert list(sizes) == ["train", "validation", "test"] and sum(sizes.values()) == len(ds)
    assert abs(sizes["train"] / len(ds) - 0.8) < 0.02 and abs(sizes["test"] / len(ds) - 0.1) < 0.02
    assert sorted(sum((split["id"][:] for split in dsd.values()), [])) == ds["id"][:]
    again = split_dataset(ds, cfg)
    assert all(dsd[name]["id"][:] == again[name]["id"][:] for name in dsd)
    other = split_dataset(ds, cfg, seed=7)
    assert dsd["test"]["id"][:] != other["test"]["id"][:]


def test_no_pair_within_tau_straddles_splits(corpus):
    ds, planted = corpus
    cfg = DedupConfig()
    dsd = split_dataset(ds, cfg)
    split_of = {row_id: name for name, split in dsd.items() for row_id in split["id"]}
    pairs = near_duplicate_pairs(fingerprint(ds["prompt"][:]), cfg.tau)
    ids = ds["id"][:]
    assert len(pairs) >= len(planted) * 0.7  # the corpus has many pairs that could leak
    assert all(split_of[ids[a]] == split_of[ids[b]] for a, b in pairs.tolist())
    leakage = cross_split_leakage(dsd, cfg)
    assert leakage["pairs"] == 0 and leakage["rate"] == 0.0 and leakage["rows"] == len(ds)


def test_stratified_by_first_subdomain(corpus):
    ds, _ = corpus
    dsd = split_dataset(ds, DedupConfig())
    for subdomain in (15, 19):
        counts = {name: sum(s[0] == subdomain for s in split["subdomains"]) for name, split in dsd.items()}
        total = sum(counts.values())
        assert abs(counts["validation"] / total - 0.1) < 0.03 and abs(counts["test"] / total - 0.1) < 0.03


def test_cross_split_leakage_detects_a_naive_split(corpus):
    ds, planted = corpus
    rng = np.random.default_rng(0)
    which = rng.permutation(len(ds)) % 10  # a random row-level 80/10/10 split ignores clusters
    naive = DatasetDict(
        {
            "train": ds.select(np.flatnonzero(which < 8)),
            "validation": ds.select(np.flatnonzero(which == 8)),
            "test": ds.select(np.flatnonzero(which == 9)),
        }
    )
    pairs = near_duplicate_pairs(fingerprint(ds["prompt"][:]), 10)
    split_of_row = np.where(which < 8, 0, which - 7)
    crossing = pairs[split_of_row[pairs[:, 0]] != split_of_row[pairs[:, 1]]]
    leakage = cross_split_leakage(naive, DedupConfig())
    assert leakage["pairs"] == len(crossing) > 0
    assert leakage["rate"] == pytest.approx(len(np.unique(crossing)) / len(ds))
    assert sum(leakage["by_split_pair"].values()) == leakage["pairs"]


def test_split_rejects_bad_fractions_and_handles_tiny_sets(corpus):
    ds, _ = corpus
    with pytest.raises(ValueError, match="fractions"):
        split_dataset(ds, DedupConfig(), fractions=(0.5, 0.5))
    tiny = split_dataset(ds.select(range(3)), DedupConfig())
    assert sum(len(s) for s in tiny.values()) == 3
    empty = split_dataset(ds.select([]), DedupConfig())
    assert cross_split_leakage(empty, DedupConfig())["pairs"] == 0
