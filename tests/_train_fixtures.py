"""Small SFT / DPO datasets in the data pipeline's output layout (CONTRACTS.md), and a runner for the entry points.

``<out>/sft`` and ``<out>/dpo`` are DatasetDicts (train/validation/test) next to ``<out>/manifest.json``, exactly as
``python -m data_pipeline`` writes them, so the training code under test reads the same files a real run reads.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from datasets import Dataset, DatasetDict

from data_pipeline.outputs import save_datasets
from tests.conftest import REPO_ROOT

PROMPTS = [
    "How do families in Kerala celebrate Onam?",
    "What should a visitor know before entering a Shinto shrine?",
    "Explain the masks worn during the Venetian carnival.",
    "Which crafts are passed between generations in Oaxaca?",
    "What is the meaning of the Day of the Dead altar?",
    "How is kabaddi played at village gatherings?",
    "Describe the music played at a Ghanaian funeral.",
    "Why do Danish people value hygge in winter?",
]
GOOD = "A respectful answer: {p} It depends on the region, and local people can explain the details best."
BAD = "Everyone there is the same, so {p} has one simple answer."


def _splits(make_row) -> DatasetDict:
    rows = [make_row(i, p) for i, p in enumerate(PROMPTS)]
    return DatasetDict(
        train=Dataset.from_list(rows * 2),  # 16 rows: enough for a few steps of batch 2-4
        validation=Dataset.from_list(rows[:2]),
        test=Dataset.from_list(rows[2:4]),
    )


def write_training_data(out: Path, cross_split_pairs: int | None = 0) -> Path:
    """Write <out>/sft, <out>/dpo and (unless cross_split_pairs is None) <out>/manifest.json; returns out."""

    def sft_row(i, p):
        return {
            "id": f"seed-{i:04d}",
            "subdomains": [i % 30 + 1],
            "messages": [{"role": "user", "content": p}, {"role": "assistant", "content": GOOD.format(p=p)}],
        }

    def dpo_row(i, p):
        return {
            "id": f"seed-{i:04d}",
            "subdomains": [i % 30 + 1],
            "prompt": [{"role": "user", "content": p}],
            "chosen": [{"role": "assistant", "content": GOOD.format(p=p)}],
            "rejected": [{"role": "assistant", "content": BAD.format(p=p)}],
            "score_chosen": 9.0,
            "score_rejected": 2.0,
        }

    # Written by the data pipeline's own writer, which returns the split hashes its manifest records.
    hashes = save_datasets(out, {"sft": _splits(sft_row), "dpo": _splits(dpo_row)})
    if cross_split_pairs is not None:
        manifest = {
            "config": {"name": "train-test"},
            "seed": 42,
            "versions": {},
            "inputs": {},
            "outputs": hashes,
            "leakage": {"cross_split_pairs": cross_split_pairs, "cross_split_rate": cross_split_pairs / 16},
            "created_at": "2026-11-28T00:00:00Z",
        }
        (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def run_module(args: list[str], env: dict | None = None, timeout: int = 240, check: bool = True):
    """Run ``python -m ...`` or ``accelerate launch ...`` from the repo root with the test environment."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})}
    cmd = [sys.executable, *args] if args[0] == "-m" else args
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        output = f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{output}")
    return proc
