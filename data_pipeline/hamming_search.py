"""Exact search for every pair of 64-bit fingerprints within Hamming distance tau (multi-index hashing).

The 64 bits are cut into m near-equal blocks; a pair within tau differs in at most floor(tau / m) bits of some block
(pigeonhole), so visiting, for every occupied block value, each key within that radius finds every pair. Candidates
are checked on all 64 bits, and a pair is reported only by the first block that finds it. m is chosen per call by a
cost model (probes + expected candidates): for tau=10 it is 6 blocks (radius 1) for small sets and 4 blocks of 16
bits (radius 2) from ~100k fingerprints up. The probe loop is a numba kernel: masks outside, sorted keys inside, so
`key ^ mask` walks the slot table in order. No Python loop runs per pair or per fingerprint.
"""

import functools

import numba
import numpy as np

_U = np.uint64


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
