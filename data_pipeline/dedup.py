"""SimHash near-duplicate detection: fingerprints, exact Hamming search, verification, clustering.

Fingerprints are bit-identical to ``simhash.Simhash(text).value`` (simhash 2.1.2, the paper's tool): lowercase, keep
the characters of ``[\\w\\u4e00-\\u9fcc]``, slide a 4-character window ("features"; a shorter text is one feature),
hash each feature with md5 (last 8 bytes, big-endian) and set bit j when more than half of the feature occurrences
have bit j set. The fast path lowercases and encodes a whole batch at once, builds packed 4-character keys and sums
bits in numba kernels, and md5-hashes each distinct feature once per call.

Search (data_pipeline.hamming_search, re-exported here) is exact multi-index hashing over 64 bits: every pair within
Hamming tau is found, with no loop over pairs.

SimHash at tau=10 also pairs unrelated texts (~29k pairs per 100k short prompts), so a candidate counts as a duplicate
only when the Jaccard similarity of the two texts' feature sets (character 4-grams of the normalised text) is at least
``DedupConfig.jaccard_threshold``. The default 0.5 sits in the gap measured on the benchmark corpus (100k synthetic
prompts): SimHash candidates that are not near-duplicates score median 0.06, planted near-duplicates (1-3 word edits)
0.64 at least and 0.88 at the median; the CulturaX release's 19 candidates score 0.72 or more.

Each cluster of verified pairs keeps one representative: the longest prompt, ties broken by the smallest id.
"""

import functools
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np
import pandas as pd
from datasets import Dataset
from tqdm.auto import tqdm

from data_pipeline.hamming_search import cross_pairs, near_duplicate_pairs

SIMHASH_TOKEN_REGEX = r"[\w\u4e00-\u9fcc]"  # simhash.Simhash's default `reg`, one character at a time
WIDTH = 4  # simhash.Simhash._slide's default window
_U = np.uint64
_CHUNK_TEXTS = 50_000  # texts per batch: bounds memory (~100 MB per batch of ~200-character texts)


@dataclass
class DedupConfig:
    tau: int = 10  # Hamming threshold on 64-bit SimHash (the paper's)
    ngram: int = 4  # character n-gram of the SimHash features and of the Jaccard check (simhash's width)
    jaccard_threshold: float = 0.5  # verified duplicate when feature-set Jaccard >= this (see module docstring)

    def __post_init__(self):
        if not 0 <= self.tau <= 32:
            raise ValueError(f"tau must be in [0, 32], got {self.tau}")
        if self.ngram != WIDTH:
            raise ValueError(f"ngram must be {WIDTH} (simhash's feature width), got {self.ngram}")
        if not 0.0 <= self.jaccard_threshold <= 1.0:
            raise ValueError(f"jaccard_threshold must be in [0, 1], got {self.jaccard_threshold}")


# ---------------------------------------------------------------------------------------------------- fingerprints


@functools.cache
def _word_char_table() -> np.ndarray:
    """Boolean table over all code points: does simhash's regex keep this character?"""
    every_char = "".join(map(chr, range(0x110000)))
    marked = re.sub(f"[^{SIMHASH_TOKEN_REGEX[1:-1]}]", "\x00", every_char)
    return np.frombuffer(marked.encode("utf-32-le", "surrogatepass"), dtype=np.uint32) != 0


def _normalise(text: str) -> str:
    return "".join(re.findall(SIMHASH_TOKEN_REGEX, text.lower()))


def _features(normalised: str) -> list[str]:
    return [normalised[i : i + WIDTH] for i in range(max(len(normalised) - WIDTH + 1, 1))]


def _feature_key(feature: str) -> int | str:
    """Four BMP code points pack into 64 bits (0 pads short features: 0 never survives normalisation)."""
    if any(ord(c) > 0xFFFF for c in feature):
        return feature
    codes = [ord(c) for c in feature] + [0] * (WIDTH - len(feature))
    return (codes[0] << 48) | (codes[1] << 32) | (codes[2] << 16) | codes[3]


def _key_to_feature(key: int) -> str:
    return "".join(chr((key >> shift) & 0xFFFF) for shift in (48, 32, 16, 0)).rstrip("\x00")


@dataclass
class FeatureRows:
    """Every text's feature occurrences (CSR: row i is ids[indptr[i]:indptr[i + 1]]) and each id's 64-bit value.

    The Jaccard check compares sets of values, so rows built by different calls compare correctly.
    """

    indptr: np.ndarray  # int64, len(texts) + 1
    ids: np.ndarray  # int32
    values: np.ndarray  # uint64: md5-derived value per feature id


class _FeatureHasher:
    """Gives each distinct feature a dense id and its md5-derived 64-bit value, computed once per feature."""

    def __init__(self):
        self.ids: dict[int | str, int] = {}
        self.values: list[int] = []
        self._array = np.zeros(0, dtype=np.uint64)

    def ids_of(self, keys: list) -> np.ndarray:
        ids, get = self.ids, self.ids.get
        out = np.empty(len(keys), dtype=np.int32)
        for position, key in enumerate(keys):
            found = get(key)
            if found is None:
                feature = key if isinstance(key, str) else _key_to_feature(key)
                digest = hashlib.md5(feature.encode("utf-8")).digest()
                found = ids[key] = len(self.values)
                self.values.append(int.from_bytes(digest[-8:], "big"))
            out[position] = found
        return out

    def value_array(self) -> np.ndarray:
        if len(self._array) < len(self.values):
            self._array = np.concatenate([self._array, np.array(self.values[len(self._array) :], dtype=np.uint64)])
        return self._array


@numba.njit(cache=True)
def _feature_keys(points, keep, texts):
    """Packed 4-character feature keys of NUL-separated lowercase texts (code points), one pass per text.

    Returns the keys in text order, the number of features per text and which texts hold astral characters
    (their keys are placeholders; the caller recomputes those texts exactly).
    """
    counts = np.zeros(texts, dtype=np.int64)
    astral = np.zeros(texts, dtype=np.bool_)
    text, kept = 0, 0
    for p in points:
        if p == 0:
            counts[text] = max(kept - 3, 1)
            text, kept = text + 1, 0
        elif keep[p]:
            kept += 1
            astral[text] |= p > 0xFFFF
    counts[text] = max(kept - 3, 1)
    keys = np.empty(counts.sum(), dtype=np.uint64)
    window, kept, at = _U(0), 0, 0
    for k in range(len(points) + 1):
        p = points[k] if k < len(points) else 0
        if p == 0:  # end of a text: a text shorter than 4 is one feature, zero-padded on the right
            if kept < 4:
                keys[at] = window << _U(16 * (4 - kept))
                at += 1
            window, kept = _U(0), 0
        elif keep[p]:
            window = (window << _U(16)) | _U(min(p, 0xFFFF))
            kept += 1
            if kept >= 4:
                keys[at] = window
                at += 1
    return keys, counts, astral


@numba.njit(cache=True)
def _majority_bits(ids, counts, values):
    """SimHash per text: bit j set when 2 * (occurrences with bit j) > occurrences.

    Bits are summed eight at a time in the byte lanes of uint64 words, flushed before a lane can pass 255.
    """
    spread = np.empty((len(values), 8), dtype=np.uint64)  # byte l of word w = bit 8w + l of the value
    for f in range(len(values)):
        for w in range(8):
            lanes = _U(0)
            for lane in range(8):
                lanes |= ((values[f] >> _U(8 * w + lane)) & _U(1)) << _U(8 * lane)
            spread[f, w] = lanes
    out = np.empty(len(counts), dtype=np.uint64)
    sums = np.zeros(64, dtype=np.int64)
    acc = np.zeros(8, dtype=np.uint64)
    at = 0
    for text in range(len(counts)):
        sums[:] = 0
        for start in range(at, at + counts[text], 255):
            acc[:] = 0
            for k in range(start, min(start + 255, at + counts[text])):
                for w in range(8):
                    acc[w] += spread[ids[k], w]
            for w in range(8):
                for lane in range(8):
                    sums[8 * w + lane] += (acc[w] >> _U(8 * lane)) & _U(0xFF)
        value = _U(0)
        for bit in range(64):
            if 2 * sums[bit] > counts[text]:
                value |= _U(1) << _U(bit)
        out[text] = value
        at += counts[text]
    return out


def _chunk_feature_ids(texts: Sequence[str], hasher: _FeatureHasher) -> tuple[np.ndarray, np.ndarray]:
    """Feature ids of every occurrence, text after text, and the number of occurrences per text.

    Texts are joined with NUL: it is neither cased nor case-ignorable, so lower() sees the same Final_Sigma context
    as on each text alone. Texts that contain NUL or astral word characters take the exact per-text path.
    """
    slow = np.array(["\x00" in t for t in texts], dtype=bool)
    lowered = "\x00".join("" if s else t for t, s in zip(texts, slow, strict=True)).lower()
    points = np.frombuffer(lowered.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    keys, counts, astral = _feature_keys(points, _word_char_table(), len(texts))
    slow |= astral
    codes, uniques = pd.factorize(keys)
    ids = hasher.ids_of(uniques.tolist())[codes]
    if not slow.any():
        return ids, counts
    slow_ids = [hasher.ids_of([_feature_key(f) for f in _features(_normalise(texts[i]))]) for i in np.flatnonzero(slow)]
    fast_occurrence = ~np.repeat(slow, counts)
    counts = counts.copy()
    counts[slow] = [len(x) for x in slow_ids]
    merged = np.empty(counts.sum(), dtype=np.int32)
    merged[~np.repeat(slow, counts)] = ids[fast_occurrence]
    merged[np.repeat(slow, counts)] = np.concatenate(slow_ids)
    return merged, counts


def fingerprints_and_features(texts: Sequence[str], progress: bool = False) -> tuple[np.ndarray, FeatureRows]:
    """SimHash values (uint64) and the feature rows used for verification, for texts in order."""
    hasher = _FeatureHasher()
    fps, rows, row_counts = [np.zeros(0, dtype=np.uint64)], [np.zeros(0, dtype=np.int32)], [np.zeros(0, np.int64)]
    for begin in tqdm(range(0, len(texts), _CHUNK_TEXTS), desc="simhash", unit="chunk", disable=not progress):
        ids, counts = _chunk_feature_ids(texts[begin : begin + _CHUNK_TEXTS], hasher)
        fps.append(_majority_bits(ids, counts, hasher.value_array()))
        rows.append(ids)
        row_counts.append(counts)
    indptr = np.r_[0, np.cumsum(np.concatenate(row_counts))].astype(np.int64)
    return np.concatenate(fps), FeatureRows(indptr, np.concatenate(rows), np.array(hasher.values, dtype=np.uint64))


def fingerprint(texts: Sequence[str]) -> np.ndarray:
    """64-bit SimHash per text (uint64), bit-identical to ``simhash.Simhash(text).value``."""
    return fingerprints_and_features(texts)[0]


# ---------------------------------------------------------------------------------------------------- verification


@numba.njit(cache=True)
def _sorted_sets(indptr, ids, values, rows):
    """Sorted, de-duplicated feature values of the given rows, as CSR."""
    out_ptr = np.zeros(len(rows) + 1, dtype=np.int64)
    total = 0
    for r in rows:
        total += indptr[r + 1] - indptr[r]
    out = np.empty(total, dtype=np.uint64)
    for k in range(len(rows)):
        row = np.sort(values[ids[indptr[rows[k]] : indptr[rows[k] + 1]]])
        write = out_ptr[k]
        for x in range(len(row)):
            if x == 0 or row[x] != row[x - 1]:
                out[write] = row[x]
                write += 1
        out_ptr[k + 1] = write
    return out_ptr, out[: out_ptr[-1]]


@numba.njit(cache=True)
def _merge_jaccard(ptr_a, set_a, at_a, ptr_b, set_b, at_b):
    """|A & B| / |A | B| for each pair of sorted sets (A = row at_a[k] of a, B = row at_b[k] of b)."""
    out = np.empty(len(at_a), dtype=np.float64)
    for k in range(len(at_a)):
        i, i_end = ptr_a[at_a[k]], ptr_a[at_a[k] + 1]
        j, j_end = ptr_b[at_b[k]], ptr_b[at_b[k] + 1]
        size = (i_end - i) + (j_end - j)
        common = 0
        while i < i_end and j < j_end:
            if set_a[i] == set_b[j]:
                common += 1
                i += 1
                j += 1
            elif set_a[i] < set_b[j]:
                i += 1
            else:
                j += 1
        out[k] = common / (size - common) if size > common else 1.0
    return out


def pair_jaccard(rows_a: FeatureRows, rows_b: FeatureRows, pairs: np.ndarray) -> np.ndarray:
    """Jaccard similarity of the feature sets (character 4-grams of the normalised text) of each pair."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    used_a, at_a = np.unique(pairs[:, 0], return_inverse=True)
    used_b, at_b = np.unique(pairs[:, 1], return_inverse=True)
    ptr_a, set_a = _sorted_sets(rows_a.indptr, rows_a.ids, rows_a.values, used_a)
    ptr_b, set_b = _sorted_sets(rows_b.indptr, rows_b.ids, rows_b.values, used_b)
    return _merge_jaccard(ptr_a, set_a, at_a.astype(np.int64), ptr_b, set_b, at_b.astype(np.int64))


def verify_pairs(texts_a: Sequence[str], texts_b: Sequence[str], pairs: np.ndarray, cfg: DedupConfig) -> np.ndarray:
    """True where a candidate pair (index in texts_a, index in texts_b) is a near-duplicate by Jaccard.

    Only the texts that some pair names are hashed: callers check a few candidates against a large set.
    """
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    used_a, at_a = np.unique(pairs[:, 0], return_inverse=True)
    used_b, at_b = np.unique(pairs[:, 1], return_inverse=True)
    rows_a = fingerprints_and_features([texts_a[i] for i in used_a])[1]
    rows_b = fingerprints_and_features([texts_b[i] for i in used_b])[1]
    return pair_jaccard(rows_a, rows_b, np.stack([at_a, at_b], axis=1)) >= cfg.jaccard_threshold


# ---------------------------------------------------------------------------------------------------- clusters


@numba.njit(cache=True)
def _union_find(n, pairs):
    parent = np.arange(n)
    for k in range(len(pairs)):
        a, b = pairs[k, 0], pairs[k, 1]
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        while parent[b] != b:
            parent[b] = parent[parent[b]]
            b = parent[b]
        if a != b:
            parent[max(a, b)] = min(a, b)
    for i in range(n):
        parent[i] = parent[parent[i]]  # roots have smaller indices, so one pass in order finishes the paths
    return parent


def clusters(n: int, pairs: np.ndarray) -> np.ndarray:
    """Connected components over pairs: each row's cluster label is the smallest row index in its cluster."""
    return _union_find(n, np.asarray(pairs, dtype=np.int64).reshape(-1, 2))


def representatives(labels: np.ndarray, lengths: np.ndarray, ids: Sequence[str]) -> np.ndarray:
    """Per row, the row its cluster keeps: the longest prompt, ties broken by the smallest id (deterministic)."""
    if not len(labels):
        return np.zeros(0, dtype=np.int64)
    id_rank = np.argsort(np.argsort(np.asarray(ids, dtype=object), kind="stable"), kind="stable")
    order = np.lexsort((id_rank, -np.asarray(lengths), labels))
    first = np.r_[True, labels[order][1:] != labels[order][:-1]]
    keeper = np.empty(len(labels), dtype=np.int64)
    keeper[labels[order[first]]] = order[first]
    return keeper[labels]


def dedup(ds: Dataset, cfg: DedupConfig, progress: bool = False) -> tuple[Dataset, dict]:
    """Keep one representative per cluster of verified near-duplicate prompts; stats say who merged into whom."""
    prompts, ids = ds["prompt"][:], ds["id"][:]  # Column[:] is one Arrow conversion, not one per row
    fps, rows = fingerprints_and_features(prompts, progress=progress)
    candidates = near_duplicate_pairs(fps, cfg.tau)
    verified = pair_jaccard(rows, rows, candidates) >= cfg.jaccard_threshold
    keeper = representatives(clusters(len(ds), candidates[verified]), np.array([len(p) for p in prompts]), ids)
    dropped = np.flatnonzero(keeper != np.arange(len(ds)))
    stats = {
        "rows_in": len(ds),
        "rows_out": len(ds) - len(dropped),
        "tau": cfg.tau,
        "jaccard_threshold": cfg.jaccard_threshold,
        "candidate_pairs": len(candidates),
        "verified_pairs": int(verified.sum()),
        "unverified_pairs": int((~verified).sum()),
        "clusters": len(np.unique(keeper[dropped])),
        "dropped": len(dropped),
        "merged_into": {ids[i]: ids[keeper[i]] for i in dropped},
    }
    return ds.select(np.flatnonzero(keeper == np.arange(len(ds)))), stats


def remove_contaminated(
    ds: Dataset, eval_prompts: list[str], cfg: DedupConfig, progress: bool = False
) -> tuple[Dataset, dict]:
    """Drop rows that near-duplicate (within tau and verified) any external evaluation prompt; count them."""
    fps, rows = fingerprints_and_features(ds["prompt"][:], progress=progress)
    eval_fps, eval_rows = fingerprints_and_features(eval_prompts)
    candidates = cross_pairs(fps, eval_fps, cfg.tau)
    verified = pair_jaccard(rows, eval_rows, candidates) >= cfg.jaccard_threshold
    hits = candidates[verified]
    contaminated = np.unique(hits[:, 0])
    ids = ds["id"][:]
    stats = {
        "eval_prompts": len(eval_prompts),
        "candidate_pairs": len(candidates),
        "verified_pairs": int(verified.sum()),
        "unverified_pairs": int((~verified).sum()),
        "removed": len(contaminated),
        "removed_ids": [ids[i] for i in contaminated],
        "matched_eval_prompts": len(np.unique(hits[:, 1])),
    }
    return ds.select(np.setdiff1d(np.arange(len(ds)), contaminated)), stats
