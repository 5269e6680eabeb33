"""Accuracy and macro-F1 of every classifier that runs offline, against the released CULTURAX labels.

    python -m benchmarks.classify [--release ../shared/culturax/CulturaX.csv] [--llm-rows 60] [--tiny-model DIR]

The release labels each question with one subdomain id (30 ids). Classifiers are trained only on the embedded seed
set (never on the release) and predict over the 30 release ids:

- accuracy: the top-probability subdomain equals the release's label (top-1);
- macro-F1: per release id, F1 of "p >= delta" against the label, averaged over the 30 ids (multi-label
  predictions: a row may hit several ids or none);
- none_rate: rows with no subdomain at p >= delta (they would be labelled 41 None).

Baselines in the same run: the majority class (always the release's most frequent id) and a uniform random guess.
The tiny-LLM logprob classifier runs on a random-weight model: a plumbing check of the real LLM path
(prompt file, next-token logprobs, P(Yes)/(P(Yes)+P(No)), threshold), not a quality figure; it runs on the first
``--llm-rows`` rows because it asks 30 questions per row.
"""

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from core.cli import Command, UserError, run_command
from core.llm import LLMConfig, build_llm
from data_pipeline.classify import ClassifyConfig, build_classifier
from data_pipeline.importers import SourceSpec, load_source

DEFAULT_RELEASE = Path(__file__).resolve().parents[2] / "shared" / "culturax" / "CulturaX.csv"


def scores(probs: np.ndarray, label_ids: list[int], truth: np.ndarray, delta: float) -> dict[str, float]:
    ids = np.array(label_ids)
    accuracy = float((ids[probs.argmax(axis=1)] == truth).mean())
    predicted = probs >= delta
    f1s = []
    for j, sid in enumerate(label_ids):
        actual = truth == sid
        denominator = actual.sum() + predicted[:, j].sum()
        f1s.append(2 * (actual & predicted[:, j]).sum() / denominator if denominator else 0.0)
    return {"accuracy": accuracy, "macro_f1": float(np.mean(f1s)), "none_rate": float((~predicted.any(1)).mean())}


COMMAND = Command(
    name="python -m benchmarks.classify",
    purpose=__doc__.splitlines()[0],
    example="python -m benchmarks.classify --release ../shared/culturax/CulturaX.csv --llm-rows 60",
)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=COMMAND.name, description=COMMAND.purpose)
    parser.add_argument("--release", type=Path, default=DEFAULT_RELEASE)
    parser.add_argument("--llm-rows", type=int, default=100, help="rows for the tiny-LLM plumbing check (0: skip)")
    parser.add_argument("--tiny-model", type=Path, default=None, help="tiny-qwen3 folder (default: build one)")
    return parser


def main(argv: list[str]) -> int:
    args = make_parser().parse_args(argv)
    if not args.release.is_file():
        raise UserError(
            f"{args.release}: no such file (--release; the released CulturaX.csv is in ../shared/culturax/)"
        )
    if args.llm_rows < 0:
        raise UserError(f"--llm-rows: must be >= 0 (0 skips the tiny-LLM check), got {args.llm_rows}")

    rows = load_source(SourceSpec(format="culturax_release", path=str(args.release))).rows
    prompts = [row["prompt"] for row in rows]
    truth = np.array([row["subdomains"][0] for row in rows])
    cfg = ClassifyConfig(labels="release")
    label_ids = cfg.label_ids()
    results: list[tuple[str, int, dict, float]] = []

    majority = Counter(truth.tolist()).most_common(1)[0][0]
    one_hot = np.array([[1.0 if sid == majority else 0.0 for sid in label_ids]] * len(rows))
    results.append((f"baseline: majority class ({majority})", len(rows), scores(one_hot, label_ids, truth, 0.5), 0.0))
    uniform = np.random.default_rng(0).random((len(rows), len(label_ids)))
    results.append(("baseline: uniform random", len(rows), scores(uniform, label_ids, truth, 0.5), 0.0))

    for method in ("embedding", "description"):
        start = time.perf_counter()
        classifier = build_classifier(ClassifyConfig(method=method, labels="release"))
        probs = classifier.predict_proba(prompts)
        results.append((classifier.name, len(rows), scores(probs, label_ids, truth, 0.5), time.perf_counter() - start))

    if args.llm_rows > 0:
        with tempfile.TemporaryDirectory() as tmp:
            model = args.tiny_model
            if model is None:
                from train.tiny_models import build

                model = build(Path(tmp))["tiny-qwen3"]
            llm_cfg = LLMConfig(backend="transformers", model=str(model), batch_size=32, dtype="float32",
                                chat_template_kwargs={"enable_thinking": False})  # fmt: skip
            start = time.perf_counter()
            classifier = build_classifier(
                ClassifyConfig(method="llm", labels="release"), build_llm(llm_cfg, None, "bench")
            )
            n = min(args.llm_rows, len(rows))
            probs = classifier.predict_proba(prompts[:n])
            name = "tiny-qwen3 logprob yes/no (RANDOM WEIGHTS: plumbing check)"
            results.append((name, n, scores(probs, label_ids, truth[:n], 0.5), time.perf_counter() - start))

    print(f"\nrelease: {args.release} ({len(rows)} rows, {len(label_ids)} subdomain ids); delta=0.5; trained on seeds")
    print(f"{'classifier':<62} {'rows':>5} {'accuracy':>9} {'macro_f1':>9} {'none_rate':>9} {'seconds':>8}")
    for name, n, score, seconds in results:
        print(f"{name:<62} {n:>5} {score['accuracy']:>9.3f} {score['macro_f1']:>9.3f} {score['none_rate']:>9.3f} "
              f"{seconds:>8.1f}")  # fmt: skip
    best = max(results[2:4], key=lambda r: r[2]["macro_f1"])
    print(f"classify: rows={len(rows)} best={best[0]} accuracy={best[2]['accuracy']:.3f} "
          f"macro_f1={best[2]['macro_f1']:.3f} majority_accuracy={results[0][2]['accuracy']:.3f}")  # fmt: skip


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(run_command(main, COMMAND, make_parser))
