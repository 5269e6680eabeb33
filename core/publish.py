"""A build is written beside output_dir and replaces the previous one only once it is complete.

    staging = begin_build(output_dir)        # <parent>/.<name>.incomplete-<host>-<pid>/
    ... write dataset/, sft/, dpo/, README.md, stats.json, manifest.json into staging ...
    commit_build(output_dir, staging)

Until ``commit_build``, output_dir is not touched: a run that fails (bad source, unreachable endpoint) or is killed
leaves the previous complete build, manifest included, exactly as it was. The LLM call cache is not part of a build:
it lives in output_dir/llm_cache (or llm_cache_dir) and is written call by call, so it keeps what a failed run paid.

The commit is a journal: a ``.complete`` file, written atomically, lists the build's entries; then the old manifest
is moved aside (so no manifest ever describes half-swapped files), each entry is renamed into place, and the new
manifest comes last. If the process dies during those renames, the next ``begin_build`` for the same output_dir
finds the ``.complete`` file and finishes the swap. A staging folder without it belonged to a run that did not
finish: it is removed once its process (same host, by pid) is gone.
"""

import json
import os
import shutil
import socket
from pathlib import Path

BUILD_ENTRIES = ("dataset", "sft", "dpo", "README.md", "stats.json", "manifest.json")
COMPLETE = ".complete"
REPLACED = ".replaced"


def _prefix(output_dir: Path) -> str:
    return f".{output_dir.name}.incomplete-"


def begin_build(output_dir: str | Path) -> Path:
    """A fresh staging folder beside ``output_dir``, after finishing or removing what earlier runs left."""
    output_dir = Path(output_dir).resolve()
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    recover(output_dir)
    staging = output_dir.parent / f"{_prefix(output_dir)}{socket.gethostname()}-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    return staging


def commit_build(output_dir: str | Path, staging: Path) -> None:
    """Make the complete build in ``staging`` the contents of ``output_dir`` (other entries there, such as
    llm_cache, stay)."""
    entries = [name for name in BUILD_ENTRIES if (staging / name).exists()]
    if "manifest.json" not in entries:
        raise ValueError(f"{staging}: no manifest.json; a build is complete only with its manifest")
    marker = staging / f"{COMPLETE}.tmp"
    marker.write_text(json.dumps(entries), encoding="utf-8")
    os.replace(marker, staging / COMPLETE)  # the commit point
    _swap(Path(output_dir).resolve(), staging)


def abandon_build(staging: Path) -> None:
    """Remove a staging folder whose run failed; output_dir was never touched."""
    if staging.exists() and not (staging / COMPLETE).exists():
        shutil.rmtree(staging, ignore_errors=True)


def recover(output_dir: Path) -> None:
    """Finish a committed swap that was interrupted; remove staging folders of runs that died."""
    host = socket.gethostname()
    for staging in sorted(output_dir.parent.glob(f"{_prefix(output_dir)}*")):
        if (staging / COMPLETE).exists():
            _swap(output_dir, staging)
            continue
        owner = staging.name.removeprefix(_prefix(output_dir))
        owner_host, _, pid = owner.rpartition("-")
        if owner_host == host and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(staging, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _move_aside(path: Path, replaced: Path) -> None:
    target = replaced / path.name
    if target.exists():  # from an interrupted earlier attempt at this same swap
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    os.replace(path, target)


def _swap(output_dir: Path, staging: Path) -> None:
    """Idempotent: each step checks what is still to do, so a swap cut short can be run again to the end."""
    entries = json.loads((staging / COMPLETE).read_text(encoding="utf-8"))
    replaced = staging / REPLACED
    replaced.mkdir(exist_ok=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    new_manifest = staging / "manifest.json"
    if new_manifest.exists() and (output_dir / "manifest.json").exists():
        _move_aside(output_dir / "manifest.json", replaced)
    for name in BUILD_ENTRIES[:-1]:
        new, old = staging / name, output_dir / name
        if new.exists():
            if old.exists():
                _move_aside(old, replaced)
            os.replace(new, old)
        elif name not in entries and old.exists():  # e.g. sft/ from an earlier build with views, this one without
            _move_aside(old, replaced)
    if new_manifest.exists():
        os.replace(new_manifest, output_dir / "manifest.json")
    shutil.rmtree(staging)
