"""Publishing an output folder (a dataset build, an eval's results, a merged model): one run at a time per folder,
written beside it, swapped in whole.

    with output_lock(output_dir):                     # held for the whole run; a second run stops at once
        ...
        with publishing(output_dir, last=("manifest.json",)) as staging:
            ... write the output into staging ...
        # output_dir now holds exactly what staging held

**Lock.** ``output_lock`` takes an exclusive OS lock (``filelock``: flock) on ``<parent>/.<name>.lock`` and records
who holds it (host, pid, since when) in ``<parent>/.<name>.owner``. A second run on the same folder does not wait:
it stops with one line naming the run that holds it. The kernel releases a crashed run's lock, so the next run gets
it, and everything a dead run left beside the folder is recovered first (below). The lock is re-entrant within a
process (the eval holds it for the whole run; its report writer takes it again).

**Staging and swap.** ``publishing`` gives a fresh ``<parent>/.<name>.incomplete-<host>-<pid>/``; output_dir is not
touched until the block ends without an error, so a failed or killed run leaves the previous output as it was. The
commit is a journal: ``.complete`` (written atomically) lists the new output's entries; then the entries of the
previous output (``.published`` inside output_dir lists them) are moved aside, the ``last`` ones (the manifest, the
report) first, so they never describe half-swapped files; the new entries are renamed into place, ``last`` ones
last; ``.published`` is rewritten and the staging folder removed. No file of the previous output survives (an old
``samples/x.jsonl`` or plot is gone, not left beside the new ones), while what other writers keep in output_dir is
never touched: the LLM call cache (``llm_cache/``, written call by call, so it keeps what a failed run paid), W&B's
``wandb/``, a user's own notes. A swap cut short is idempotent: the next run's lock finishes it from the journal. A
staging folder without the journal belonged to a run that died before committing (the lock says no run is live) and
is removed.
"""

import json
import os
import shutil
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from filelock import FileLock, Timeout

from core.cli import UserError

COMPLETE = ".complete"  # in a staging folder: the journal of a committed swap
REPLACED = ".replaced"  # in a staging folder: the previous output's entries, moved aside during the swap
PUBLISHED = ".published"  # in output_dir: the entries of the output that was published there
_held: dict[Path, int] = {}  # lock files this process holds -> nesting depth


class OutputInUseError(UserError):
    """Another run holds the output folder's lock."""


def _beside(output_dir: Path, suffix: str) -> Path:
    return output_dir.parent / f".{output_dir.name}.{suffix}"


def staging_prefix(output_dir: Path) -> str:
    return f".{output_dir.name}.incomplete-"


@contextmanager
def output_lock(output_dir: str | Path) -> Iterator[Path]:
    """Hold ``output_dir`` for this run (see the module docstring); yields the resolved path."""
    output_dir = Path(output_dir).resolve()
    lock_file = _beside(output_dir, "lock")
    if lock_file in _held:
        _held[lock_file] += 1
        try:
            yield output_dir
        finally:
            _held[lock_file] -= 1
        return
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lock_file, timeout=0, thread_local=False)
    try:
        lock.acquire()
    except Timeout:
        raise OutputInUseError(f"{output_dir}: in use by {_holder(output_dir)}; wait for it to end") from None
    _held[lock_file] = 1
    owner = _beside(output_dir, "owner")
    try:
        since = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
        _write_atomically(owner, {"host": socket.gethostname(), "pid": os.getpid(), "since": since})
        recover(output_dir)
        yield output_dir
    finally:
        del _held[lock_file]
        owner.unlink(missing_ok=True)
        lock.release()


def _holder(output_dir: Path) -> str:
    """Who holds the lock, as recorded; the holder writes its record just after taking the lock, so a record that is
    missing (or names a dead process: the previous holder's, about to be overwritten) is read again for a moment."""
    record = None
    for _ in range(20):
        try:
            record = json.loads(_beside(output_dir, "owner").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            record = None
        if record and not (record["host"] == socket.gethostname() and not _alive(record["pid"])):
            break
        time.sleep(0.1)
    if not record:
        return "another run (its host and pid are not recorded)"
    return f"another run (host {record['host']}, pid {record['pid']}, since {record['since']})"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


@contextmanager
def publishing(output_dir: str | Path, last: Sequence[str] = ()) -> Iterator[Path]:
    """A fresh staging folder for the new output; when the block ends without an error it becomes output_dir's
    output (``last``: entries swapped in last and moved out first, e.g. the manifest). On an error the staging
    folder is removed and output_dir is untouched. Takes the lock (re-entrant) for its duration."""
    with output_lock(output_dir) as output_dir:
        staging = output_dir.parent / f"{staging_prefix(output_dir)}{socket.gethostname()}-{os.getpid()}"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
        try:
            yield staging
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        entries = sorted(p.name for p in staging.iterdir())
        entries = [name for name in entries if name not in last] + [name for name in last if name in entries]
        _write_atomically(staging / COMPLETE, {"entries": entries, "last": list(last)})  # the commit point
        _swap(output_dir, staging)


def recover(output_dir: Path) -> None:
    """Under the lock, every staging folder beside output_dir is a dead run's: finish its swap if it committed,
    else remove it."""
    for staging in sorted(output_dir.parent.glob(f"{staging_prefix(output_dir)}*")):
        if (staging / COMPLETE).exists():
            _swap(output_dir, staging)
        else:
            shutil.rmtree(staging, ignore_errors=True)


def _write_atomically(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


def _published(output_dir: Path) -> list[str]:
    try:
        return json.loads((output_dir / PUBLISHED).read_text(encoding="utf-8"))["entries"]
    except FileNotFoundError:
        return []


def _move_aside(path: Path, replaced: Path) -> None:
    target = replaced / path.name
    if target.exists():  # from an interrupted earlier attempt at this same swap
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    os.replace(path, target)


def _swap(output_dir: Path, staging: Path) -> None:
    """Idempotent: each step checks what is still to do, so a swap cut short can be run again to the end."""
    journal = json.loads((staging / COMPLETE).read_text(encoding="utf-8"))
    entries, last = journal["entries"], journal["last"]
    replaced = staging / REPLACED
    replaced.mkdir(exist_ok=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    for name in last:  # the old manifest goes first: it must never sit beside half-swapped files
        if (staging / name).exists() and (output_dir / name).exists():
            _move_aside(output_dir / name, replaced)
    for name in _published(output_dir):
        if name not in entries and (output_dir / name).exists():  # e.g. an old plot or view this output lacks
            _move_aside(output_dir / name, replaced)
    for name in entries:
        if (staging / name).exists():
            if (output_dir / name).exists():
                _move_aside(output_dir / name, replaced)
            os.replace(staging / name, output_dir / name)
    _write_atomically(output_dir / PUBLISHED, {"entries": entries})
    shutil.rmtree(staging)
