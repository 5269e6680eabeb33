"""Audit any prompt dataset (the released CULTURAX included): duplicates, label balance, leakage, mismatched responses.

    python -m data_pipeline.audit --input PATH [--format culturax_release|jsonl|csv|parquet|hf]
        [--splits-dir DIR] --output report.json

PATH is a file, a Hugging Face dataset id, a save_to_disk folder, or a pipeline output folder (its ``dataset/`` is
audited, all splits together, with their cross-split leakage). ``--splits-dir`` names a saved DatasetDict whose
cross-split leakage is reported. Records the importer rejects are skipped and listed (``--on_error raise`` to stop).

Near duplicates are counted among distinct prompts (exact repeats are ``exact_duplicate_rows``):
``near_duplicate_pairs`` are SimHash pairs within tau that the Jaccard check of data_pipeline.dedup confirms,
``near_duplicate_pairs_unverified`` the SimHash pairs within tau it rejects (chance collisions).

Response mismatch is scored for whatever responses the dataset has: the importer's ``responses`` column
(``response_mismatch``) and, for a built CULTURAX (a pipeline output folder or its ``dataset/``), the judged
``chosen`` and ``rejected`` responses (``response_mismatch_chosen``, ``response_mismatch_rejected``; a row without a
preference pair has no rejected response and is not scored there). A row's score is the cosine similarity between
the MiniLM embedding of its prompt and the normalised mean of the embeddings of its responses; rows scoring below
``MISMATCH_THRESHOLD`` are reported. The threshold, 0.25, comes from the release (1,500 rows, three responses each):
scores have median 0.62 and 5th percentile 0.36. All 42 rows under 0.25 were read: 37 answer a different question (a
casual party with American colleagues answered with the history of salsa, a family trip to Singapore answered about
Bengali hygiene; most sit in two blocks of the file, lines 12-31 and 82-100, whose responses look shifted), and 5
are short generic replies to hostile prompts. Between 0.25 and 0.32 such generic but on-topic replies dominate, so a
higher threshold would mostly add false alarms. The score is topical: a response on the prompt's topic but off its
question (the release's Mexico food-tour question answered about carnival parades scores 0.64) is beyond what it can
see.
"""

import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from transformers import HfArgumentParser

from core.cli import Command, UserError, run_command
from core.preflight import is_hub_id
from data_pipeline import embeddings, taxonomy
from data_pipeline.dedup import DedupConfig, fingerprints_and_features, near_duplicate_pairs, pair_jaccard
from data_pipeline.importers import SourceSpec, load_source

MISMATCH_THRESHOLD = 0.25
JUDGED_COLUMNS = ("chosen", "rejected")  # a built CULTURAX's responses (data_pipeline/judge.py)
SUFFIX_FORMATS = {".jsonl": "jsonl", ".csv": "csv", ".parquet": "parquet"}


@dataclass
class AuditArguments:
    input: str = field(metadata={"help": "file, HF dataset id, save_to_disk folder or pipeline output folder"})
    output: str = field(metadata={"help": "where the JSON report is written"})
    format: str = field(default="", metadata={"help": "culturax_release|jsonl|csv|parquet|hf; default from suffix"})
    splits_dir: str = field(default="", metadata={"help": "saved DatasetDict to check for cross-split leakage"})
    split: str = field(default="train", metadata={"help": "split to read for --format hf"})
    tau: int = field(default=DedupConfig.tau, metadata={"help": "SimHash Hamming threshold"})
    mismatch_threshold: float = field(default=MISMATCH_THRESHOLD, metadata={"help": "cosine below = mismatch"})
    on_error: str = field(default="skip", metadata={"help": "skip (list bad records in the report) or raise"})


def load_for_audit(args: AuditArguments) -> tuple[list[dict], list[dict], object | None, dict, list[dict]]:
    """Rows, skipped records, the DatasetDict to check for leakage (None when no splits are given), the judged
    responses of a built CULTURAX ({"chosen" | "rejected": {row id: text}}; empty for any other dataset) and the
    sources read (with the encoding each was read in)."""
    import datasets

    path = Path(args.input)
    if not path.exists() and not (args.format == "hf" or is_hub_id(args.input)):
        raise FileNotFoundError(2, "No such file or directory", args.input)  # a hub id is not a local path
    judged: dict[str, dict[str, str]] = {}
    if (path / "dataset" / "dataset_dict.json").exists():
        path = path / "dataset"  # a pipeline output folder
    splits = datasets.load_from_disk(args.splits_dir) if args.splits_dir else None
    if (path / "dataset_dict.json").exists():
        saved = datasets.load_from_disk(str(path))
        splits = splits if splits is not None else saved
        specs = [SourceSpec("hf", str(path), split=name, on_error=args.on_error) for name in saved]
        for column in JUDGED_COLUMNS:
            if all(column in split.column_names for split in saved.values()):
                pairs = (zip(split["id"], split[column], strict=True) for split in saved.values())
                judged[column] = {row_id: text for split in pairs for row_id, text in split if text}
    else:
        fmt = args.format or ("hf" if path.is_dir() else SUFFIX_FORMATS.get(path.suffix, ""))
        if not fmt:
            raise UserError(f"{args.input}: cannot tell the format from the name: pass --format")
        specs = [SourceSpec(fmt, args.input, split=args.split, on_error=args.on_error)]
    rows, skipped, sources = [], [], []
    for spec in specs:
        result = load_source(spec)
        rows += result.rows
        skipped += result.skipped
        sources += result.sources
    return rows, skipped, splits, judged, sources


def exact_duplicate_ids(prompts: list[str], ids: list[str]) -> list[str]:
    seen: set[str] = set()
    repeats = []
    for prompt, row_id in zip(prompts, ids, strict=True):
        if prompt in seen:
            repeats.append(row_id)
        seen.add(prompt)
    return repeats


def near_duplicates(prompts: list[str], cfg: DedupConfig) -> dict:
    distinct = list(dict.fromkeys(prompts))
    fps, features = fingerprints_and_features(distinct)  # one pass gives both the search keys and the Jaccard sets
    pairs = near_duplicate_pairs(fps, cfg.tau)
    verified = pair_jaccard(features, features, pairs) >= cfg.jaccard_threshold
    examples = [[distinct[i], distinct[j]] for i, j in pairs[verified][:5]]
    return {"verified": int(verified.sum()), "unverified": int((~verified).sum()), "examples": examples}


def response_scores(rows: list[dict], vectors: dict[str, np.ndarray]) -> tuple[list[int], np.ndarray]:
    """Indices of rows with responses and their prompt-vs-responses cosine (see the module docstring); ``vectors``
    holds the embedding of every prompt and response (``embed_texts``)."""
    scored = [i for i, row in enumerate(rows) if row["responses"]]
    scores = np.zeros(len(scored), dtype=np.float32)
    for k, i in enumerate(scored):
        centroid = np.mean([vectors[t] for t in rows[i]["responses"]], axis=0)
        scores[k] = vectors[rows[i]["prompt"]] @ centroid / max(float(np.linalg.norm(centroid)), 1e-12)
    return scored, scores


def embed_texts(scored_rows: list[list[dict]]) -> dict[str, np.ndarray]:
    """The embedding of every prompt and response of rows with responses, over all response columns in one call: a
    prompt is scored once per column, but embedded once."""
    texts = list(dict.fromkeys(t for rows in scored_rows for row in rows if row["responses"]
                               for t in [row["prompt"], *row["responses"]]))  # fmt: skip
    return dict(zip(texts, embeddings.embed(texts, show_progress=True), strict=True))


def response_mismatch(rows: list[dict], threshold: float, vectors: dict[str, np.ndarray]) -> dict:
    scored, scores = response_scores(rows, vectors)
    flagged = [k for k in np.argsort(scores, kind="stable") if scores[k] < threshold]
    return {
        "count": len(flagged),
        "ids": [rows[scored[k]]["id"] for k in flagged],  # worst first
        "threshold": threshold,
        "model": embeddings.MODEL_NAME,
        "scored_rows": len(scored),
        "score_percentiles": {str(q): round(float(np.percentile(scores, q)), 4) for q in (5, 25, 50)} if scored else {},
        "examples": [
            {"id": rows[scored[k]]["id"], "score": round(float(scores[k]), 4), "prompt": rows[scored[k]]["prompt"],
             "response": rows[scored[k]]["responses"][0]}
            for k in flagged[:3]
        ],
    }  # fmt: skip


def audit_rows(rows: list[dict], cfg: DedupConfig, threshold: float, splits=None, judged: dict | None = None) -> dict:
    prompts = [row["prompt"] for row in rows]
    duplicates = exact_duplicate_ids(prompts, [row["id"] for row in rows])
    near = near_duplicates(prompts, cfg)
    counts = Counter(i for row in rows for i in row["subdomains"])
    leakage = None
    if splits is not None:
        from data_pipeline.split import cross_split_leakage

        leakage = cross_split_leakage(splits, cfg)
    scored_rows = {"response_mismatch": rows} | {
        f"response_mismatch_{column}": [
            {**row, "responses": [texts[row["id"]]] if row["id"] in texts else []} for row in rows
        ]
        for column, texts in (judged or {}).items()
    }
    vectors = embed_texts(list(scored_rows.values()))
    mismatches = {key: response_mismatch(scored, threshold, vectors) for key, scored in scored_rows.items()}
    return {
        "rows": len(rows),
        "distinct_prompts": len(set(prompts)),
        "exact_duplicate_rows": len(duplicates),
        "exact_duplicate_ids": duplicates,
        "tau": cfg.tau,
        "jaccard_threshold": cfg.jaccard_threshold,
        "near_duplicate_pairs": near["verified"],
        "near_duplicate_pairs_unverified": near["unverified"],
        "near_duplicate_examples": near["examples"],
        "subdomain_counts": {str(i): counts[i] for i in sorted(counts)},
        "unlabelled_rows": sum(1 for row in rows if not row["subdomains"]),
        "imbalance_ratio": max(counts.values()) / min(counts.values()) if counts else None,
        "cross_split_leakage": leakage,
        **mismatches,
    }


def print_summary(report: dict, console: Console) -> None:
    table = Table(title=f"Audit of {report['input']}", show_header=True, header_style="bold")
    table.add_column("check")
    table.add_column("result", justify="right")
    mismatches = {key.removeprefix("response_mismatch"): value for key, value in report.items()
                  if key.startswith("response_mismatch") and value["scored_rows"]}  # fmt: skip
    leakage = report["cross_split_leakage"]
    ratio = report["imbalance_ratio"]
    leaked = "no splits given" if leakage is None else f"{leakage['pairs']} pairs ({leakage['rate']:.2%})"
    lines = [
        ("rows", f"{report['rows']:,}"),
        ("records skipped (bad input)", f"{len(report['skipped']):,}"),
        ("exact duplicate rows", f"{report['exact_duplicate_rows']:,}"),
        (f"near-duplicate pairs, tau={report['tau']} (verified)", f"{report['near_duplicate_pairs']:,}"),
        ("near-duplicate pairs, unverified", f"{report['near_duplicate_pairs_unverified']:,}"),
        ("subdomains present", str(len(report["subdomain_counts"]))),
        ("imbalance ratio (max/min)", "n/a" if ratio is None else f"{ratio:.1f}"),
        ("cross-split leakage", leaked),
    ]
    for suffix, mismatch in mismatches.items():
        scored = {"": "responses", "_chosen": "chosen", "_rejected": "rejected"}.get(suffix, suffix)
        lines.append((f"{scored} mismatch (cosine < {mismatch['threshold']})",
                      f"{mismatch['count']} of {mismatch['scored_rows']}"))  # fmt: skip
    if not mismatches:
        lines.append(("response mismatch", "no responses in this dataset"))
    for name, value in lines:
        table.add_row(name, value)
    console.print(table)
    counts = sorted(report["subdomain_counts"].items(), key=lambda item: -item[1])
    console.print("subdomains: " + ", ".join(f"{taxonomy.get(int(i)).name} {n}" for i, n in counts))
    for example in (example for mismatch in mismatches.values() for example in mismatch["examples"]):
        console.print(f"mismatch {example['id']} ({example['score']:.2f}): {example['prompt'][:90]!r} -> "
                      f"{example['response'][:70]!r}")  # fmt: skip


COMMAND = Command(
    name="python -m data_pipeline.audit",
    purpose="Audit any prompt dataset: duplicates, label balance, cross-split leakage, mismatched responses.",
    example="python -m data_pipeline.audit --input runs/demo/data --output runs/demo/audit.json",
)


def make_parser() -> HfArgumentParser:
    return HfArgumentParser(AuditArguments)


def main(argv: list[str] | None = None) -> dict:
    (args,) = make_parser().parse_args_into_dataclasses(args=argv)
    rows, skipped, splits, judged, sources = load_for_audit(args)
    cfg = DedupConfig(tau=args.tau)
    audited = audit_rows(rows, cfg, args.mismatch_threshold, splits, judged)
    report = {"input": args.input, "format": args.format, **audited}
    report["sources"] = sources
    report["skipped"] = skipped
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print_summary(report, Console())
    print(f"report written to {output}", file=sys.stderr)
    return report


if __name__ == "__main__":
    sys.exit(run_command(main, COMMAND, make_parser))
