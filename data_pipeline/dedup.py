"""SimHash near-duplicate detection: fingerprints, exact Hamming search, verification, clustering.

Fingerprints are bit-identical to ``simhash.Simhash(text).value`` (simhash 2.1.2, the paper's tool): lowercase, keep
the characters of ``[\\w\\u4e00-\\u9fcc]``, slide a 4-character window ("features"; a shorter text is one feature),
hash each feature with md5 (last 8 bytes, big-endian) and set bit j when more than half of the feature occurrences
have bit j set. The fast path hashes each distinct feature once per call and sums bits with numpy.

Search is exact multi-index hashing: 64 bits are cut into 3 blocks (21, 21, 22 bits); a pair within Hamming tau
differs in at most floor(tau / 3) bits of some block, so probing every key within that radius of each occupied block
value finds every pair; candidates are then checked on all 64 bits.

SimHash at tau=10 also pairs unrelated texts (~29k pairs per 100k short prompts), so a candidate counts as a duplicate
only when the Jaccard similarity of the two texts' feature sets (character 4-grams of the normalised text) is at least
``DedupConfig.jaccard_threshold`` (0.5: measured by ``python -m benchmarks.dedup``, unrelated pairs that collide score
about 0.1 and planted near-duplicates 0.6-0.9).

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


# ---------------------------------------------------------------------------------------------------- exact search


def _blocks(tau: int, count: int) -> list[tuple[int, int]]:
    """(shift, width) of `count` near-equal blocks covering the 64 bits."""
    widths = [64 // count + (1 if i < 64 % count else 0) for i in range(count)][::-1]
    shifts = np.r_[0, np.cumsum(widths[:-1])]
    return [(int(s), int(w)) for s, w in zip(shifts, widths, strict=True)]


@functools.cache
def _flip_masks(width: int, radius: int) -> np.ndarray:
    """Every non-zero key of `width` bits with at most `radius` bits set, as int64."""
    masks = [np.zeros(1, dtype=np.int64)]
    for _ in range(radius):
        grown = (masks[-1][:, None] | (np.int64(1) << np.arange(width, dtype=np.int64))[None, :]).ravel()
        masks.append(np.unique(grown))
    every = np.unique(np.concatenate(masks))
    return every[every != 0]


@numba.njit(cache=True)
def _popcount(x):
    x = x - ((x >> _U(1)) & _U(0x5555555555555555))
    x = (x & _U(0x3333333333333333)) + ((x >> _U(2)) & _U(0x3333333333333333))
    x = (x + (x >> _U(4))) & _U(0x0F0F0F0F0F0F0F0F)
    return (x * _U(0x0101010101010101)) >> _U(56)


@numba.njit(cache=True)
def _probe_block(keys, starts, sizes, order, slot, masks, fps, sides, tau, radius, earlier):
    """Pairs of rows in buckets whose keys differ by a mask (or share a key) that are within tau on all 64 bits.

    Masks are the outer loop and keys (sorted) the inner one, so `key ^ mask` walks the slot table in order.
    A pair is kept only in the first block where its block distance is within the radius (no duplicates).
    """
    out = np.empty((1024, 2), dtype=np.int64)
    found = 0
    for m in range(len(masks) + 1):
        mask = 0 if m == 0 else masks[m - 1]
        for a in range(len(keys)):
            if m == 0:
                b = a
            else:
                partner = keys[a] ^ mask
                if partner < keys[a]:
                    continue  # each unordered bucket pair once
                if len(slot):
                    b = slot[partner]
                else:  # wide blocks: binary search instead of a dense table
                    b = np.searchsorted(keys, partner)
                    if b >= len(keys) or keys[b] != partner:
                        b = -1
                if b < 0:
                    continue
            for i in range(starts[a], starts[a] + sizes[a]):
                first = starts[b] + (i - starts[a] + 1 if m == 0 else 0)
                for j in range(first, starts[b] + sizes[b]):
                    xor = fps[i] ^ fps[j]  # fps and sides are in key order: the inner loop reads memory in order
                    if _popcount(xor) > tau:
                        continue
                    u, v = sides[i], sides[j]
                    if not ((u & 1 and v & 2) or (u & 2 and v & 1)):
                        continue  # cross search: both fingerprints only on the same side
                    seen = False
                    for e in range(len(earlier)):
                        if _popcount(xor & earlier[e]) <= radius:
                            seen = True
                    if seen:
                        continue
                    if found == len(out):
                        grown = np.empty((2 * len(out), 2), dtype=np.int64)
                        grown[:found] = out
                        out = grown
                    out[found, 0] = order[i]
                    out[found, 1] = order[j]
                    found += 1
    return out[:found]


def _search_block(fps, sides, shift: int, width: int, radius: int, tau: int, earlier: np.ndarray) -> np.ndarray:
    keys = ((fps >> _U(shift)) & _U((1 << width) - 1)).astype(np.int64)
    order = np.argsort(keys, kind="stable")
    bucket_keys, bucket_start, bucket_size = np.unique(keys[order], return_index=True, return_counts=True)
    slot = np.zeros(0, dtype=np.int32)
    if width <= 24:  # dense key -> bucket table (16 MB at most); wider blocks (tau <= 1) binary-search
        slot = np.full(1 << width, -1, dtype=np.int32)
        slot[bucket_keys] = np.arange(len(bucket_keys), dtype=np.int32)
    masks = _flip_masks(width, radius)
    fps, sides = fps[order], sides[order]
    return _probe_block(bucket_keys, bucket_start, bucket_size, order, slot, masks, fps, sides, tau, radius, earlier)


def _block_count(tau: int, n: int) -> int:
    """Blocks for n fingerprints, by a cost model: probes (occupied keys x masks) + expected candidate pairs."""

    def cost(count: int) -> float:
        total = 0.0
        for _, width in _blocks(tau, count):
            masks = len(_flip_masks(width, tau // count)) + 1
            total += 3.0 * min(n, 2**width) * masks + n * n / 2 * masks / 2**width
        return total

    allowed = [c for c in range(1, min(tau + 1, 8) + 1) if 64 // c <= 24 or c == tau + 1]
    return min(allowed, key=cost)


def _distinct_pairs(distinct: np.ndarray, sides: np.ndarray, tau: int, count: int | None = None) -> np.ndarray:
    """Pairs (u, v), u != v, of distinct fingerprints within tau whose sides (bit 1: a, bit 2: b) can meet."""
    if not 0 <= tau <= 32:
        raise ValueError(f"tau must be in [0, 32], got {tau}")
    blocks = _blocks(tau, count or _block_count(tau, len(distinct)))
    radius = tau // len(blocks)
    found = [np.zeros((0, 2), dtype=np.int64)]
    for index, (shift, width) in enumerate(blocks):
        earlier = np.array([((1 << w) - 1) << s for s, w in blocks[:index]], dtype=np.uint64)
        found.append(_search_block(distinct, sides, shift, width, radius, tau, earlier))
    return np.concatenate(found)


def _groups(group: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Members of each group as (order, start, size): members of g are order[start[g]:start[g] + size[g]]."""
    order = np.argsort(group, kind="stable")
    size = np.bincount(group, minlength=groups)
    return order, np.cumsum(size) - size, size


def _expand_bucket_pairs(a_start, a_size, b_start, b_size) -> tuple[np.ndarray, np.ndarray]:
    """All (position in bucket a, position in bucket b) combinations, as positions in the sorted order."""
    sizes = a_size * b_size
    owner = np.repeat(np.arange(len(sizes)), sizes)
    rank = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    return a_start[owner] + rank // b_size[owner], b_start[owner] + rank % b_size[owner]


def _sorted_pairs(left: list[np.ndarray], right: list[np.ndarray]) -> np.ndarray:
    pairs = np.stack([np.concatenate(left), np.concatenate(right)], axis=1).astype(np.int64).reshape(-1, 2)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def near_duplicate_pairs(fps: np.ndarray, tau: int = 10) -> np.ndarray:
    """Every pair (i, j), i < j, with Hamming(fps[i], fps[j]) <= tau: (m, 2) int64, sorted. Exact, no O(n^2) loop.

    Identical fingerprints are collapsed first, so a heavy group of exact duplicates is one search entry.
    """
    distinct, group = np.unique(np.asarray(fps, dtype=np.uint64), return_inverse=True)
    pairs = _distinct_pairs(distinct, np.full(len(distinct), 3, dtype=np.uint8), tau)
    order, start, size = _groups(group, len(distinct))
    multi = np.flatnonzero(size > 1)  # rows sharing one fingerprint: every pair inside the group
    left, right = _expand_bucket_pairs(start[multi], size[multi], start[multi], size[multi])
    upper = left < right
    a, b = _expand_bucket_pairs(start[pairs[:, 0]], size[pairs[:, 0]], start[pairs[:, 1]], size[pairs[:, 1]])
    i, j = np.r_[order[left[upper]], order[a]], np.r_[order[right[upper]], order[b]]
    return _sorted_pairs([np.minimum(i, j)], [np.maximum(i, j)])


def cross_pairs(fps_a: np.ndarray, fps_b: np.ndarray, tau: int = 10) -> np.ndarray:
    """Every (index in a, index in b) with Hamming <= tau: (m, 2) int64, sorted; pairs inside a or b are skipped."""
    fps_a, fps_b = np.asarray(fps_a, dtype=np.uint64), np.asarray(fps_b, dtype=np.uint64)
    distinct, group = np.unique(np.r_[fps_a, fps_b], return_inverse=True)
    group_a, group_b = group[: len(fps_a)], group[len(fps_a) :]
    sides = np.zeros(len(distinct), dtype=np.uint8)
    sides[group_a] |= 1
    sides[group_b] |= 2
    pairs = _distinct_pairs(distinct, sides, tau)
    order_a, start_a, size_a = _groups(group_a, len(distinct))
    order_b, start_b, size_b = _groups(group_b, len(distinct))
    same = np.arange(len(distinct))  # a fingerprint on both sides pairs its a rows with its b rows
    left, right = [], []
    for u, v in ((same, same), (pairs[:, 0], pairs[:, 1]), (pairs[:, 1], pairs[:, 0])):
        a, b = _expand_bucket_pairs(start_a[u], size_a[u], start_b[v], size_b[v])
        left.append(order_a[a])
        right.append(order_b[b])
    return _sorted_pairs(left, right)


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
    """True where a candidate pair (index in texts_a, index in texts_b) is a near-duplicate by Jaccard."""
    rows_a = fingerprints_and_features(texts_a)[1]
    rows_b = rows_a if texts_b is texts_a else fingerprints_and_features(texts_b)[1]
    return pair_jaccard(rows_a, rows_b, pairs) >= cfg.jaccard_threshold


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
