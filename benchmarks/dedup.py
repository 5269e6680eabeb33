"""Benchmark: our SimHash dedup against the `simhash` package and datasketch MinHash LSH, on one corpus.

``python -m benchmarks.dedup [--n N]``: a deterministic synthetic corpus (N prompts of ~190 characters from the seed
prompts' vocabulary, 5% planted near-duplicates made by 1-3 word edits) plus the released CulturaX questions when
../shared is present. Ours runs end to end on everything: fingerprint, exact tau=10 search, Jaccard verification.
The baselines are slow, so they run on a prefix of the corpus and their times are extrapolated (said in the output):
fingerprinting and MinHash linearly, SimhashIndex queries by query count times index size (its buckets grow with it).
Peak memory is tracemalloc's peak for each method on the same prefix.
"""

import argparse
import json
import logging
import re
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
from datasketch import MinHash, MinHashLSH
from simhash import Simhash, SimhashIndex

from core.cli import Command, UserError, run_command
from data_pipeline.dedup import (
    DedupConfig,
    _features,
    _normalise,
    clusters,
    fingerprints_and_features,
    near_duplicate_pairs,
    pair_jaccard,
)

REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO / "data_pipeline" / "seeds" / "prompts.jsonl"
RELEASE = REPO.parent / "shared" / "culturax" / "CulturaX.csv"
TARGET_CHARS = 190


def _vocabulary() -> tuple[np.ndarray, np.ndarray]:
    """Words of the bundled seed prompts with their frequencies (Zipf-like, like real prompts)."""
    words: dict[str, int] = {}
    for line in SEEDS.read_text(encoding="utf-8").splitlines():
        for word in re.findall(r"[A-Za-z']+", json.loads(line)["prompt"]):
            words[word.lower()] = words.get(word.lower(), 0) + 1
    vocab = np.array(sorted(words))
    freq = np.array([words[w] for w in vocab], dtype=np.float64)
    return vocab, freq / freq.sum()


def _edit(words: list[str], rng: np.random.Generator, new_words: list[str]) -> list[str]:
    """A near-duplicate: one to three word substitutions, insertions or deletions, maybe a case change."""
    words = list(words)
    for _ in range(int(rng.integers(1, 4))):
        op, at = int(rng.integers(3)), int(rng.integers(len(words)))
        if op == 0:
            words[at] = new_words.pop()
        elif op == 1:
            words.insert(at, new_words.pop())
        elif len(words) > 5:
            del words[at]
    if rng.random() < 0.3:
        words[0] = words[0].upper()
    return words


def synthetic_corpus(n: int, seed: int = 0, planted_fraction: float = 0.05):
    """n prompts of ~190 characters; a fraction are edited copies of earlier prompts (the planted pairs)."""
    rng = np.random.default_rng(seed)
    vocab, p = _vocabulary()
    vocab_words = vocab.tolist()  # indexing this list shares one str per word (numpy str arrays would cost GBs at 1M)
    draws = rng.choice(len(vocab), size=n * 45, p=p).astype(np.int32)
    texts, word_lists, planted, cursor = [], [], [], 0
    for i in range(n):
        if i > 10 and rng.random() < planted_fraction:
            source = int(rng.integers(i))
            words = _edit(word_lists[source], rng, [vocab_words[k] for k in rng.choice(len(vocab), size=3, p=p)])
            planted.append((source, i))
        else:
            words, length = [], 0
            while length < TARGET_CHARS:
                words.append(vocab_words[draws[cursor % len(draws)]])
                length += len(words[-1]) + 1
                cursor += 1
            words[0] = words[0].capitalize()
        word_lists.append(words)
        texts.append(" ".join(words) + "?")
    return texts, np.array(planted, dtype=np.int64).reshape(-1, 2)


def release_questions() -> list[str]:
    """The released CulturaX questions (Windows-1252 CSV, third-party: read in place) when ../shared is present."""
    return pd.read_csv(RELEASE, encoding="cp1252")["Question"].astype(str).tolist() if RELEASE.exists() else []


def _normalised_4grams(text: str) -> list[bytes]:
    """The same feature set our Jaccard check compares, so both sides measure one similarity."""
    return [feature.encode("utf-8") for feature in set(_features(_normalise(text)))]


def _pair_set(pairs: np.ndarray) -> set[tuple[int, int]]:
    return set(map(tuple, np.sort(np.asarray(pairs).reshape(-1, 2), axis=1).tolist()))


def quality(found: np.ndarray, planted: np.ndarray, families: np.ndarray, synthetic: int, limit: int) -> tuple:
    """Recall of planted pairs (both rows < limit) and precision over found synthetic pairs (same planted family)."""
    found = np.sort(np.asarray(found, dtype=np.int64).reshape(-1, 2), axis=1)
    planted = planted[(planted < limit).all(axis=1)]
    hits = _pair_set(found)
    recall = float(np.mean([tuple(p) in hits for p in planted.tolist()])) if len(planted) else float("nan")
    inside = found[(found < synthetic).all(axis=1)]
    precision = float(np.mean(families[inside[:, 0]] == families[inside[:, 1]])) if len(inside) else float("nan")
    return recall, precision


def run_ours(texts: list[str], cfg: DedupConfig) -> dict:
    start = time.perf_counter()
    fps, rows = fingerprints_and_features(texts)
    fingerprinted = time.perf_counter()
    candidates = near_duplicate_pairs(fps, cfg.tau)
    searched = time.perf_counter()
    verified = candidates[pair_jaccard(rows, rows, candidates) >= cfg.jaccard_threshold]
    done = time.perf_counter()
    return {
        "fps": fps,
        "candidates": candidates,
        "pairs": verified,
        "fingerprint_s": fingerprinted - start,
        "search_s": searched - fingerprinted,
        "verify_s": done - searched,
        "total_s": done - start,
    }


def run_simhash_package(texts: list[str], fps: np.ndarray, ours: np.ndarray, queries: int) -> dict:
    """Simhash over the prefix; SimhashIndex(k=10) built on the prefix, queried for its first `queries` rows."""
    start = time.perf_counter()
    objects = [Simhash(text) for text in texts]
    fingerprint_s = time.perf_counter() - start
    assert all(o.value == int(v) for o, v in zip(objects, fps, strict=False)), "fingerprints differ from simhash"
    start = time.perf_counter()
    index = SimhashIndex([(str(i), o) for i, o in enumerate(objects)], k=10)
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    answers = [index.get_near_dups(objects[i]) for i in range(queries)]
    query_s = (time.perf_counter() - start) / queries
    neighbours = {i: set() for i in range(queries)}
    for a, b in ours.tolist():
        for x, y in ((a, b), (b, a)):
            if x < queries and y < len(texts):
                neighbours[x].add(y)
    agree = sum({int(k) for k in answer} - {i} == neighbours[i] for i, answer in enumerate(answers))
    return {"fingerprint_s": fingerprint_s, "build_s": build_s, "query_s": query_s, "agree": agree}


def run_datasketch(texts: list[str], thresholds: tuple[float, ...], num_perm: int = 128) -> dict:
    start = time.perf_counter()
    sketches = MinHash.bulk([_normalised_4grams(t) for t in texts], num_perm=num_perm)
    minhash_s = time.perf_counter() - start
    results = {"minhash_s": minhash_s}
    for threshold in thresholds:
        start = time.perf_counter()
        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        for i, sketch in enumerate(sketches):
            lsh.insert(i, sketch)
        pairs = [(i, j) for i, sketch in enumerate(sketches) for j in lsh.query(sketch) if j > i]
        results[threshold] = {"lsh_s": time.perf_counter() - start, "pairs": np.array(pairs).reshape(-1, 2)}
    return results


def peak_mib(function, *args) -> float:
    tracemalloc.start()
    function(*args)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


COMMAND = Command(
    name="python -m benchmarks.dedup",
    purpose=__doc__.splitlines()[0],
    example="python -m benchmarks.dedup --n 100000 --prefix 20000",
)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=COMMAND.name, description=COMMAND.purpose)
    parser.add_argument("--n", type=int, default=100_000, help="synthetic prompts (the release's are added)")
    parser.add_argument("--prefix", type=int, default=20_000, help="rows the slow baselines run on")
    parser.add_argument("--queries", type=int, default=100, help="SimhashIndex queries to time")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = make_parser().parse_args(argv)
    for name in ("n", "prefix", "queries"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name}: must be >= 1, got {getattr(args, name)}")
    logging.getLogger("simhash").setLevel(logging.ERROR)  # SimhashIndex warns on every big bucket
    cfg = DedupConfig()
    synthetic, planted = synthetic_corpus(args.n, seed=args.seed)
    release = release_questions()
    texts = synthetic + release
    total, prefix = len(texts), min(args.prefix, len(texts))
    families = clusters(len(synthetic), planted)
    print(
        f"corpus: {len(synthetic):,} synthetic prompts ({len(planted):,} planted near-duplicate pairs) + "
        f"{len(release):,} CulturaX release questions = {total:,}; mean {np.mean([len(t) for t in texts]):.0f} chars"
    )

    rss_before_ours = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    run_ours(texts[:200], cfg)  # warm-up: loads the compiled numba kernels and builds the character table
    ours = run_ours(texts, cfg)
    rss_after_ours = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    recall, precision = quality(ours["pairs"], planted, families, len(synthetic), total)
    cand_recall, cand_precision = quality(ours["candidates"], planted, families, len(synthetic), total)
    release_pairs = int((ours["pairs"].max(axis=1) >= len(synthetic)).sum()) if len(ours["pairs"]) else 0

    prefix_pairs = ours["candidates"][(ours["candidates"] < prefix).all(axis=1)]
    simhash = run_simhash_package(texts[:prefix], ours["fps"][:prefix], prefix_pairs, min(args.queries, prefix))
    scale = total / prefix
    simhash_fp_s = simhash["fingerprint_s"] * scale
    simhash_search_s = simhash["build_s"] * scale + simhash["query_s"] * scale * total
    datasketch = run_datasketch(texts[:prefix], (0.8, 0.5))

    rows = [
        (
            "ours (numpy SimHash + exact MIH search + Jaccard verify)",
            total / ours["fingerprint_s"],
            ours["search_s"],
            ours["total_s"],
            recall,
            precision,
            peak_mib(run_ours, texts[:prefix], cfg),
            "measured",
        )
    ]
    rows.append(
        (
            "ours, candidates before verification",
            total / ours["fingerprint_s"],
            ours["search_s"],
            ours["fingerprint_s"] + ours["search_s"],
            cand_recall,
            cand_precision,
            float("nan"),
            "measured",
        )
    )
    rows.append(
        (
            "simhash 2.1.2 Simhash + SimhashIndex(k=10)",
            prefix / simhash["fingerprint_s"],
            simhash_search_s,
            simhash_fp_s + simhash_search_s,
            cand_recall,
            cand_precision,
            peak_mib(lambda t: SimhashIndex([(str(i), Simhash(x)) for i, x in enumerate(t)], k=10), texts[:prefix]),
            f"extrapolated from {prefix:,} rows, {args.queries} queries",
        )
    )
    for threshold in (0.8, 0.5):
        result = datasketch[threshold]
        d_recall, d_precision = quality(result["pairs"], planted, families, len(synthetic), prefix)
        rows.append(
            (
                f"datasketch MinHash(128) + MinHashLSH({threshold})",
                prefix / datasketch["minhash_s"],
                result["lsh_s"] * scale,
                (datasketch["minhash_s"] + result["lsh_s"]) * scale,
                d_recall,
                d_precision,
                peak_mib(run_datasketch, texts[:prefix], (threshold,)),
                f"extrapolated from {prefix:,} rows",
            )
        )
    header = f"{'method':58} {'fps/s':>9} {'search s':>10} {'total s':>9} {'recall':>7} {'prec.':>6} {'peak MiB':>9}"
    print(f"\n{header}  notes")
    for name, rate, search_s, total_s, r, p, mib, note in rows:
        print(f"{name:58} {rate:9,.0f} {search_s:10.1f} {total_s:9.1f} {r:7.3f} {p:6.3f} {mib:9.1f}  {note}")
    print(
        f"\nours: fingerprint {ours['fingerprint_s']:.1f} s, search {ours['search_s']:.1f} s "
        f"({len(ours['candidates']):,} candidate pairs), verify {ours['verify_s']:.1f} s "
        f"({len(ours['pairs']):,} verified, {len(ours['candidates']) - len(ours['pairs']):,} unverified, "
        f"{release_pairs} involving release questions, left out of precision); process peak RSS "
        f"{rss_before_ours:,.0f} MiB before ours (corpus built), {rss_after_ours:,.0f} MiB after"
    )
    print(
        f"SimhashIndex: timed on the first {prefix:,} rows and {args.queries} queries, extrapolated to {total:,} "
        f"(build x {scale:.1f}, queries x {total:,} x {scale:.1f}); its answers agree with our exact search on "
        f"{simhash['agree']}/{args.queries} queried rows. recall/precision: the same fingerprints and tau as ours "
        f"before verification. datasketch: recall and precision on the first {prefix:,} rows. Peak memory: "
        f"tracemalloc peak of each method run again on the first {prefix:,} rows."
    )
    datasketch_s = (datasketch["minhash_s"] + datasketch[0.8]["lsh_s"]) * scale
    print(
        f"dedup: n={total} ours_s={ours['total_s']:.1f} vs_datasketch={datasketch_s / ours['total_s']:.1f}x "
        f"vs_simhashindex={simhash_search_s / ours['search_s']:.0f}x recall={recall:.3f} precision={precision:.3f}"
    )


if __name__ == "__main__":
    sys.exit(run_command(main, COMMAND, make_parser))
