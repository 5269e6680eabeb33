"""SimHash dedup: reference-identical fingerprints, exact search against brute force, verification, clusters."""

import random
import re

import numpy as np
import pytest
from simhash import Simhash

from benchmarks.dedup import synthetic_corpus
from data_pipeline.dedup import (
    DedupConfig,
    clusters,
    cross_pairs,
    dedup,
    fingerprint,
    fingerprints_and_features,
    near_duplicate_pairs,
    pair_jaccard,
    remove_contaminated,
    verify_pairs,
)
from data_pipeline.hamming_search import _block_count, _distinct_pairs
from data_pipeline.schema import make_row, rows_to_dataset

ALPHABET = "abcdefghij klmnop ABCXYZ ΣσςΑΟΔ İıßẞ éèñ 中文字 𝐀𝐁 😀 \x00\t\n.,!?'-_0123 ٣ ﬁ"
EDGE_CASES = ["", " ", "a", "ab", "abc", "abcd", "!!!", "ΟΔΟΣ", "ΣΑΣ σ", "Σ\x00a", "x\x00y", "İstanbul", "𝐀𝐁𝐂", "a𝐀b"]


def varied_texts(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    texts = list(EDGE_CASES)
    while len(texts) < count:
        length = rng.choice([0, 1, 2, 3, 4, 5, 12, 60, 190, 700])
        texts.append("".join(rng.choice(ALPHABET) for _ in range(length)))
    texts.append("ab" * 200)  # features repeated > 50 times take simhash's unbatched branch
    texts.append("".join(rng.choice(ALPHABET) for _ in range(3000)))  # > 255 occurrences: several uint8 segments
    return texts


def brute_pairs(fps: np.ndarray, tau: int) -> np.ndarray:
    distance = np.bitwise_count(fps[:, None] ^ fps[None, :])
    i, j = np.nonzero(np.triu(distance <= tau, 1))
    return np.stack([i, j], axis=1)


def planted_fingerprints(n: int, tau: int, seed: int = 1) -> np.ndarray:
    """Random 64-bit values with neighbours at distances around tau and a group of identical values."""
    rng = np.random.default_rng(seed)
    fps = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    for target, source in zip(rng.integers(0, n, n // 5), rng.integers(0, n, n // 5), strict=True):
        flips = rng.choice(64, size=int(rng.integers(0, tau + 3)), replace=False)
        fps[target] = fps[source] ^ np.uint64(sum(1 << int(f) for f in flips))
    fps[:6] = fps[6]
    return fps


def test_fingerprints_are_bit_identical_to_simhash():
    texts = varied_texts(1500)
    expected = np.array([Simhash(t).value for t in texts], dtype=np.uint64)
    ours = fingerprint(texts)
    mismatched = [repr(texts[i][:40]) for i in np.flatnonzero(ours != expected)]
    assert ours.dtype == np.uint64 and not mismatched, mismatched[:5]


def test_fingerprints_of_real_prompts_and_in_any_chunking(culturax_release):
    import pandas as pd

    questions = pd.read_csv(culturax_release, encoding="cp1252")["Question"].astype(str).tolist()
    expected = np.array([Simhash(t).value for t in questions], dtype=np.uint64)
    np.testing.assert_array_equal(fingerprint(questions), expected)
    np.testing.assert_array_equal(fingerprint(questions[:7]), expected[:7])


def test_exact_search_matches_brute_force_on_texts_with_planted_duplicates():
    texts, planted = synthetic_corpus(5000, seed=3)
    fps = fingerprint(texts)
    ours = near_duplicate_pairs(fps, 10)
    np.testing.assert_array_equal(ours, brute_pairs(fps, 10))
    assert len(planted) > 100 and len(ours) > 100  # the corpus really has pairs to find


@pytest.mark.parametrize("tau", [0, 1, 3, 10, 13])
def test_exact_search_matches_brute_force_at_any_tau(tau):
    fps = planted_fingerprints(3000, tau)
    expected = brute_pairs(fps, tau)
    assert len(expected) > 50
    np.testing.assert_array_equal(near_duplicate_pairs(fps, tau), expected)


@pytest.mark.parametrize("blocks", [3, 4, 5, 6, 11])
def test_every_block_layout_is_exact(blocks):
    """The cost model picks the block count by size (4 blocks at 100k+ for tau=10): each layout must be exact."""
    distinct = np.unique(planted_fingerprints(3000, 10, seed=blocks))
    found = np.sort(_distinct_pairs(distinct, np.full(len(distinct), 3, dtype=np.uint8), 10, blocks), axis=1)
    found = found[np.lexsort((found[:, 1], found[:, 0]))]  # each pair once: no duplicates survive to compare
    np.testing.assert_array_equal(found, brute_pairs(distinct, 10))


def test_cross_pairs_match_brute_force():
    fps = planted_fingerprints(3000, 10)
    a, b = fps[:2000], fps[1500:]  # overlapping on purpose: identical values on both sides
    i, j = np.nonzero(np.bitwise_count(a[:, None] ^ b[None, :]) <= 10)
    np.testing.assert_array_equal(cross_pairs(a, b, 10), np.stack([i, j], axis=1))
    assert cross_pairs(a, b[:0], 10).shape == (0, 2)


def test_block_count_follows_the_cost_model():
    assert [_block_count(10, n) for n in (3000, 100_000, 1_000_000)] == [6, 4, 4]
    assert _block_count(0, 10) == 1 and _block_count(1, 10) == 2


def test_search_handles_empty_and_single_inputs():
    assert near_duplicate_pairs(np.zeros(0, dtype=np.uint64)).shape == (0, 2)
    assert near_duplicate_pairs(np.ones(1, dtype=np.uint64)).shape == (0, 2)
    np.testing.assert_array_equal(near_duplicate_pairs(np.zeros(3, dtype=np.uint64)), [[0, 1], [0, 2], [1, 2]])


def reference_jaccard(a: str, b: str) -> float:
    def features(text):
        kept = "".join(re.findall(r"[\w\u4e00-\u9fcc]", text.lower()))
        return {kept[i : i + 4] for i in range(max(len(kept) - 3, 1))}

    fa, fb = features(a), features(b)
    return len(fa & fb) / len(fa | fb)


def test_pair_jaccard_matches_python_sets_and_verify_uses_the_threshold():
    texts = varied_texts(300, seed=5)
    rng = np.random.default_rng(0)
    pairs = rng.integers(0, len(texts), size=(400, 2))
    _, rows = fingerprints_and_features(texts)
    expected = np.array([reference_jaccard(texts[a], texts[b]) for a, b in pairs])
    np.testing.assert_allclose(pair_jaccard(rows, rows, pairs), expected)
    other = texts[::-1]
    cfg = DedupConfig(jaccard_threshold=0.3)
    verdict = verify_pairs(texts, other, pairs, cfg)
    np.testing.assert_array_equal(verdict, [reference_jaccard(texts[a], other[b]) >= 0.3 for a, b in pairs])


def test_union_find_clusters_are_connected_components():
    pairs = np.array([[0, 4], [4, 7], [2, 3], [9, 8], [7, 1]])
    labels = clusters(10, pairs)
    assert labels.tolist() == [0, 0, 2, 2, 0, 5, 6, 0, 8, 8]


def dataset(prompts: list[str], ids: list[str] | None = None):
    ids = ids or [f"r{i:03d}" for i in range(len(prompts))]
    return rows_to_dataset([make_row(i, p, [15], "test") for i, p in zip(ids, prompts, strict=True)])


BASE = "How do families in Oaxaca prepare the altars for the Day of the Dead, and which foods are placed on them?"


def test_dedup_keeps_the_longest_prompt_of_each_verified_cluster():
    texts, _ = synthetic_corpus(300, seed=9, planted_fraction=0.0)
    prompts = texts[:20] + [BASE, BASE + " Thanks!", BASE.upper(), BASE.replace("Oaxaca", "Puebla")]
    ds = dataset(prompts)
    out, stats = dedup(ds, DedupConfig())
    assert stats["rows_in"] == 24 and stats["dropped"] == 3 and stats["rows_out"] == len(out) == 21
    assert stats["merged_into"] == {"r020": "r021", "r022": "r021", "r023": "r021"}
    assert BASE + " Thanks!" in out["prompt"][:] and BASE not in out["prompt"][:]
    assert stats["verified_pairs"] == 6 and stats["clusters"] == 1
    assert stats["candidate_pairs"] == stats["verified_pairs"] + stats["unverified_pairs"]


def test_dedup_breaks_length_ties_by_smallest_id_and_rejects_unverified_candidates():
    ds = dataset([BASE, BASE], ids=["zeta", "alpha"])
    out, stats = dedup(ds, DedupConfig())
    assert out["id"][:] == ["alpha"] and stats["merged_into"] == {"zeta": "alpha"}
    # threshold 1.0 accepts identical feature sets only: this candidate stays unverified and nothing is dropped
    strict = DedupConfig(jaccard_threshold=1.0)
    out, stats = dedup(dataset([BASE, BASE + " Thanks!"]), strict)
    assert len(out) == 2 and stats["candidate_pairs"] == 1 and stats["unverified_pairs"] == 1
    out, stats = dedup(dataset([BASE]).select([]), DedupConfig())
    assert len(out) == 0 and stats["dropped"] == 0


def test_remove_contaminated_drops_and_counts_rows_matching_eval_prompts():
    texts, _ = synthetic_corpus(200, seed=11, planted_fraction=0.0)
    ds = dataset(texts[:50] + [BASE])
    evals = [BASE.replace("Dead", "dead"), texts[7] + "!", "Something else entirely about Kabuki theatre?"]
    out, stats = remove_contaminated(ds, evals, DedupConfig())
    assert stats["removed"] == 2 and sorted(stats["removed_ids"]) == ["r007", "r050"]
    assert len(out) == 49 and stats["eval_prompts"] == 3 and stats["matched_eval_prompts"] == 2
    out, stats = remove_contaminated(ds, [], DedupConfig())
    assert len(out) == 51 and stats["removed"] == 0


@pytest.mark.parametrize("bad", [{"tau": -1}, {"tau": 40}, {"ngram": 3}, {"jaccard_threshold": 1.5}])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        DedupConfig(**bad)
