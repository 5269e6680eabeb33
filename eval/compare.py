"""Comparison table across eval runs: `python -m eval.compare RESULT_DIR... [--wandb PROJECT] [--wandb-dir DIR]`.

Sources, combinable:
- RESULT_DIR: a local eval output_dir holding results.json;
- --wandb PROJECT ("entity/project" or "project"): the eval runs (job_type "eval") of a W&B project, online;
- --wandb-dir DIR: offline (or not yet synced) W&B runs under DIR, read from their run-*.wandb files.
Each eval run logs its whole results (without config) as the summary key "results", so every source yields the
same dict. Prints the models × metrics table and the baseline -> tuned deltas; --output also writes it as markdown.

Runs of different protocols (results["protocol"]: judge, moderator, decoding rule, samples per prompt; eval/hhh/
paper.py) measure different things: they are refused in one table unless --mixed-protocols is given, and the table
lists each run's protocol either way.
"""

import argparse
import json
import struct
import sys
from pathlib import Path

from core.cli import Command, UserError, run_command
from eval.report.paper import protocol_line
from eval.report.tables import deltas_table, has_heldout, heldout_deltas_table, heldout_table, metrics_table

COMMAND = Command(
    name="python -m eval.compare",
    purpose="Compare eval runs: one models x metrics table and the baseline -> tuned deltas across runs.",
    example="python -m eval.compare runs/qwen3-8b/eval runs/deepseek-r1-distill-qwen-7b/eval --output compare.md",
)

WANDB_BLOCK = 32 * 1024  # the W&B transaction log uses LevelDB's log format: 32 KiB blocks, 7-byte record headers
WANDB_FILE_HEADER = 7  # b":W&B" + magic (2 bytes) + version (1 byte)


def load_result_dir(path: str) -> tuple[str, dict]:
    file = Path(path) / "results.json"
    if not file.exists():
        raise FileNotFoundError(f"{file}: not found (give an eval output_dir)")
    return Path(path).name, json.loads(file.read_text(encoding="utf-8"))


def wandb_log_records(path: Path):
    """Serialized protobuf records of one run-*.wandb file (LevelDB log: FULL, or FIRST/MIDDLE*/LAST chunks)."""
    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B run file (header {data[:4]!r})")
    pos, pending = WANDB_FILE_HEADER, b""
    while pos + 7 <= len(data):
        left_in_block = WANDB_BLOCK - pos % WANDB_BLOCK
        if left_in_block < 7:  # block trailer padding
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 0:  # zero fill: end of written data
            break
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            yield pending
            pending = b""


def offline_run_summary(path: Path) -> tuple[dict, dict]:
    """(run info {"id", "project", "group", "job_type"}, final summary) of an offline run file."""
    from wandb.proto import wandb_internal_pb2

    info, summary = {}, {}
    for raw in wandb_log_records(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            info = {"id": run.run_id, "project": run.project, "group": run.run_group, "job_type": run.job_type}
        elif kind == "summary":
            for item in record.summary.update:
                if item.key:
                    summary[item.key] = json.loads(item.value_json)
    return info, summary


def load_wandb_dir(directory: str) -> list[tuple[str, dict]]:
    runs = []
    for path in sorted(Path(directory).glob("**/offline-run-*/run-*.wandb")):
        info, summary = offline_run_summary(path)
        if info.get("job_type") == "eval" and "results" in summary:
            runs.append((f"{info['group']}/{info['id']}", summary["results"]))
    if not runs:
        raise FileNotFoundError(f"{directory}: no offline W&B eval run with a 'results' summary found")
    return runs


def load_wandb_project(project: str) -> list[tuple[str, dict]]:
    """Eval runs of a W&B project through the public API (needs network and WANDB_API_KEY)."""
    import wandb

    runs = wandb.Api().runs(project, filters={"jobType": "eval"})
    found = [
        (f"{run.group}/{run.id}", run.summary_metrics["results"]) for run in runs if "results" in run.summary_metrics
    ]
    if not found:
        raise LookupError(f"W&B project {project}: no eval run (job_type 'eval') with a 'results' summary")
    return found


def check_protocols(sources: list[tuple[str, dict]]) -> None:
    """One line naming the runs and the fields in which their protocols differ (a run without one differs too)."""
    protocols = {label: results.get("protocol") or {} for label, results in sources}
    fields = sorted({key for p in protocols.values() for key in p} or {"protocol"})
    differing = [key for key in fields if len({repr(p.get(key)) for p in protocols.values()}) > 1]
    if differing:
        values = "; ".join(
            f"{key}: " + ", ".join(f"{label} {p.get(key, 'not recorded')!r}" for label, p in protocols.items())
            for key in differing
        )
        raise UserError(f"runs of different protocols ({values}); pass --mixed-protocols to put them in one table")


def comparison_markdown(sources: list[tuple[str, dict]]) -> str:
    lines = ["# Eval comparison across runs", "", "## Protocols", ""]
    lines += [f"- {label}: {protocol_line(results.get('protocol'))}" for label, results in sources]
    lines += ["", "## Models × metrics", ""]
    for k, (label, results) in enumerate(sources):
        table = metrics_table(results, source=label)
        lines += table if k == 0 else table[2:]
    lines += ["", "## Changes baseline → tuned (paired bootstrap 95% CI)", ""]
    for k, (label, results) in enumerate(sources):
        table = deltas_table(results, source=label)
        lines += table if k == 0 else table[2:]
    held = [(label, results) for label, results in sources if has_heldout(results)]
    for title, table_of in (
        ("Held-out, judge-free", heldout_table),
        ("Held-out changes baseline → tuned (paired bootstrap 95% CI)", heldout_deltas_table),
    ):
        if held:
            lines += ["", f"## {title}", ""]
        for k, (label, results) in enumerate(held):
            table = table_of(results, source=label)
            lines += table if k == 0 else table[2:]
    return "\n".join(lines) + "\n"


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.compare", description=__doc__.split("\n")[0])
    parser.add_argument("result_dirs", nargs="*", help="eval output_dirs holding results.json")
    parser.add_argument("--wandb", metavar="PROJECT", help="read eval runs of this W&B project (online)")
    parser.add_argument("--wandb-dir", metavar="DIR", help="read offline W&B eval runs under DIR")
    parser.add_argument("--output", metavar="FILE", help="also write the markdown table here")
    parser.add_argument(
        "--mixed-protocols", action="store_true", help="put runs of different protocols (judge, moderator, decoding, "
        "samples) in one table anyway; each run's protocol is listed above it"
    )  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> str:
    parser = make_parser()
    args = parser.parse_args(argv)
    sources = [load_result_dir(d) for d in args.result_dirs]
    if args.wandb_dir:
        sources += load_wandb_dir(args.wandb_dir)
    if args.wandb:
        sources += load_wandb_project(args.wandb)
    if not sources:
        parser.error("give RESULT_DIR(s), --wandb PROJECT or --wandb-dir DIR")
    if not args.mixed_protocols:
        check_protocols(sources)
    text = comparison_markdown(sources)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    print(text)
    return text


if __name__ == "__main__":
    sys.exit(run_command(main, COMMAND, make_parser))
