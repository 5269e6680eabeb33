"""The training data: the dataset guard (provenance manifest, no cross-split leakage, the very splits the manifest
hashed) and each row rendered the way its model family is trained (core/chat_templates.py holds the template rules).
"""

import hashlib
import json
import logging
from pathlib import Path

from datasets import Dataset, DatasetDict, load_from_disk
from transformers import PreTrainedTokenizerBase

from core.chat_templates import always_thinks, has_thinking_switch, think_block
from core.digests import sha256_split

logger = logging.getLogger(__name__)

# keep_reasoning: the data pipeline's reasoning column for each conversation column (data_pipeline/views.py).
REASONING_COLUMNS = {"messages": "reasoning", "chosen": "chosen_reasoning", "rejected": "rejected_reasoning"}


class DatasetGuardError(RuntimeError):
    """The training data has no provenance manifest, its manifest shows cross-split leakage, or its splits are not the
    ones the manifest describes."""


def check_manifest(dataset_dir: Path) -> tuple[str | None, dict, str]:
    """(problem or None, manifest, sha256 of the manifest file) for a dataset view ``<out>/<view>`` and its build's
    ``<out>/manifest.json``: no cross-split leakage, and every split of the view is byte for byte the one the
    manifest's ``outputs`` records (so a folder mixing two builds, or edited after the build, is refused)."""
    dataset_dir = Path(dataset_dir).resolve()
    manifest_path = dataset_dir.parent / "manifest.json"
    if not manifest_path.is_file():
        return f"{manifest_path}: no data manifest next to the dataset", {}, ""
    raw = manifest_path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    try:
        manifest = json.loads(raw)
    except json.JSONDecodeError as error:
        return f"{manifest_path}:{error.lineno}: not valid JSON ({error.msg})", {}, digest
    pairs = manifest.get("leakage", {}).get("cross_split_pairs")
    if not isinstance(pairs, int):
        return (
            f"{manifest_path}: field 'leakage.cross_split_pairs': missing or not an integer ({pairs!r})",
            manifest,
            digest,
        )
    if pairs > 0:
        return (
            f"{manifest_path}: field 'leakage.cross_split_pairs': {pairs} near-duplicate pairs cross splits",
            manifest,
            digest,
        )
    return _splits_problem(manifest_path, manifest.get("outputs"), dataset_dir), manifest, digest


def _splits_problem(manifest_path: Path, outputs, dataset_dir: Path) -> str | None:
    """Why the view's splits on disk are not the ones ``outputs`` ({"<view>/<split>": sha256}) records, or None."""
    view = dataset_dir.name
    if not isinstance(outputs, dict):
        return f"{manifest_path}: field 'outputs': missing or not a mapping of split hashes ({outputs!r})"
    recorded = {key.split("/", 1)[1]: value for key, value in outputs.items() if key.startswith(f"{view}/")}
    if not recorded:
        return f"{manifest_path}: field 'outputs': no split of '{view}' recorded, so {dataset_dir} is not this build's"
    listing = dataset_dir / "dataset_dict.json"
    on_disk = json.loads(listing.read_text()).get("splits", []) if listing.is_file() else list(recorded)
    unrecorded = sorted(set(on_disk) - set(recorded))
    if unrecorded:
        return f"{manifest_path}: field 'outputs': {dataset_dir} has splits {unrecorded} that this build did not write"
    for split, expected in sorted(recorded.items()):
        found = sha256_split(dataset_dir / split) if (dataset_dir / split).is_dir() else "missing"
        if found != expected:
            return (
                f"{manifest_path}: field 'outputs.{view}/{split}': sha256 {expected[:12]}... recorded, "
                f"{dataset_dir / split} is {found[:12]}...: the folder is not the build this manifest describes"
            )
    return None


def load_guarded_dataset(
    dataset_name: str, allow_unguarded: bool, train_split: str = "train"
) -> tuple[DatasetDict, dict, str]:
    """Load ``<out>/<view>`` and its ``<out>/manifest.json``; refuse missing provenance, cross-split leakage, splits
    that are not the manifest's (sha256), or a missing or empty training split (e.g. a DPO view where the judge left
    no preference pair).

    Returns (datasets, manifest, manifest_sha256). With ``allow_unguarded`` a failed check is logged and recorded in
    the manifest dict under ``"guard_override"`` (logged to W&B with the manifest), never silently ignored.
    """
    problem, manifest, digest = check_manifest(Path(dataset_name))
    if problem and not allow_unguarded:
        raise DatasetGuardError(f"{problem}; refusing to train (pass --allow_unguarded_dataset to override)")
    if problem:
        logger.warning("dataset guard overridden: %s", problem)
        manifest = {**manifest, "guard_override": problem}
    datasets = load_from_disk(dataset_name)
    if train_split not in datasets or len(datasets[train_split]) == 0:
        raise DatasetGuardError(f"{dataset_name}: split '{train_split}' is missing or has no rows; nothing to train on")
    return datasets, manifest, digest


def prepare_conversations(
    dataset: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    columns: list[str],
    enable_thinking: bool,
    keep_reasoning: bool = False,
) -> Dataset:
    """Make each row render the way the model family is trained; the answers' words are left as they are.

    - Qwen3 templates (``enable_thinking`` switch): a per-row ``chat_template_kwargs`` that TRL forwards to
      ``apply_chat_template``, so thinking is off for every row unless asked.
    - DeepSeek-R1-Distill templates (always think): an assistant turn without ``</think>`` gets an empty think block,
      matching the ``<think>\\n`` the template opens at inference. Reasoning that is present is kept, because the
      training template (TRL's ``deepseek_r1_distill_training``) does not cut at ``</think>``.
    - ``keep_reasoning``: an answer whose row has a reasoning trace (views' reasoning columns) is trained as
      ``<think>\ntrace\n</think>\n\nanswer``, so tuning keeps the model reasoning; rows without a trace are
      trained as above. Without it, SFT/DPO on answers teaches R1-Distill to skip reasoning (an empty think block),
      which the eval's efficiency split shows as a drop in thinking share.
    """
    template = tokenizer.chat_template or ""
    traces = {c: REASONING_COLUMNS[c] for c in columns if c in REASONING_COLUMNS} if keep_reasoning else {}
    missing = [name for name in traces.values() if name not in dataset.column_names]
    if missing:
        raise ValueError(
            f"keep_reasoning: the dataset has no {missing} column(s); build it with the data pipeline's "
            "generate.keep_reasoning: true and a reasoning generator, or train with keep_reasoning: false"
        )
    qwen3 = has_thinking_switch(template)
    if qwen3 and keep_reasoning and not enable_thinking:
        raise ValueError("keep_reasoning on a Qwen3 template needs enable_thinking: true (off, it drops reasoning)")

    def with_think(row: dict) -> dict:
        def content(message: dict, column: str) -> str:
            if message["role"] != "assistant" or "</think>" in message["content"]:
                return message["content"]
            trace = row[traces[column]] if column in traces else ""
            if qwen3 and not trace.strip():
                return message["content"]  # Qwen3's template writes its own empty block when thinking is off
            return think_block(trace) + message["content"]

        return {column: [{**m, "content": content(m, column)} for m in row[column]] for column in columns}

    if qwen3:
        dataset = dataset.map(lambda _: {"chat_template_kwargs": {"enable_thinking": enable_thinking}})
        return dataset.map(with_think) if keep_reasoning else dataset
    if always_thinks(template):
        return dataset.map(with_think)
    return dataset


def training_splits(
    script_args, training_args, datasets: DatasetDict, tokenizer, columns: list[str]
) -> tuple[Dataset, Dataset | None]:
    """(train split, eval split or None when evaluation is off), each prepared by ``prepare_conversations``."""

    def prepare(split: str) -> Dataset:
        return prepare_conversations(
            datasets[split], tokenizer, columns, script_args.enable_thinking, script_args.keep_reasoning
        )

    evaluate = training_args.eval_strategy != "no"
    return prepare(script_args.dataset_train_split), prepare(script_args.dataset_test_split) if evaluate else None
