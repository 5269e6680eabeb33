"""Seeded, stratified subsets: what every "use only N of these" knob draws (a data source's `limit`, the eval's
`max_prompts_per_set`, a benchmark's `limit`), so a cut keeps every stratum in proportion and is never the first N
rows (which keeps only the lowest subdomain ids, or NormAd's first label).

A stratum gets its share of the sample by largest remainder (ties broken at random with the seed) and its members at
random. Deterministic for a seed and independent of the keys' order.
"""

import random
from collections import defaultdict


def stratified_sample(strata: dict[str, tuple], n: int, seed: int) -> set[str]:
    """n of the keys, allocated over the first stratum level in proportion to its groups' sizes (largest remainder),
    then recursively over the next level inside each group; at the last level drawn at random."""
    rng = random.Random(seed)
    depth = len(next(iter(strata.values()))) if strata else 0

    def pick(keys: list[str], level: int, count: int) -> list[str]:
        if count >= len(keys):
            return keys
        if level == depth:
            return rng.sample(keys, count)
        groups: dict = defaultdict(list)
        for key in keys:
            groups[strata[key][level]].append(key)
        quota = allocate({group: len(members) for group, members in sorted(groups.items())}, count, rng)
        return [key for group in sorted(groups) for key in pick(groups[group], level + 1, quota[group])]

    return set(pick(sorted(strata), 0, n))


def allocate(sizes: dict, n: int, rng: random.Random) -> dict:
    """Largest-remainder apportionment of n over groups of the given sizes (n <= their total): each group gets the
    floor of its proportional share, and the leftover goes one each to the largest fractional parts, ties at random."""
    total = sum(sizes.values())
    shares = {group: n * size / total for group, size in sizes.items()}
    quota = {group: int(share) for group, share in shares.items()}
    order = sorted(sizes, key=lambda group: (quota[group] - shares[group], rng.random()))
    for group in order[: n - sum(quota.values())]:
        quota[group] += 1
    return quota


def sample_rows(strata: list[tuple], n: int | None, seed: int) -> list[int]:
    """Indices (in their original order) of a seeded sample of ``n`` rows stratified by each row's stratum tuple;
    every row when ``n`` is None or not smaller than the number of rows."""
    if n is None or n >= len(strata):
        return list(range(len(strata)))
    keys = {f"{i:09d}": stratum for i, stratum in enumerate(strata)}
    return sorted(int(key) for key in stratified_sample(keys, n, seed))
