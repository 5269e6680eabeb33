"""core/publish.py: one run per output folder. A second run stops at once with one line naming the first (host, pid,
since when); a crashed run's lock and staging are recovered by the next run; two real builds started together on one
output_dir end as one whole build."""

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from core.cli import is_user_error, one_line
from core.llm.local_server import LocalOpenAIServer
from core.publish import OutputInUseError, output_lock, publishing
from data_pipeline.importers import SEED_PATH
from tests.conftest import REPO_ROOT
from train.data import check_manifest

ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
HOLD = """
import sys
from core.publish import publishing
with publishing(sys.argv[1]) as staging:
    (staging / "half.txt").write_text("never published")
    print("holding", flush=True)
    sys.stdin.read()
"""


def beside(out: Path) -> list[str]:
    """What sits beside output_dir apart from the lock file, which stays by design (waiters share its inode)."""
    return sorted(p.name for p in out.parent.glob(f".{out.name}.*") if p.name != f".{out.name}.lock")


def test_a_second_run_stops_at_once_naming_the_first_and_a_crashed_runs_lock_and_staging_are_recovered(tmp_path):
    out = tmp_path / "out"
    with publishing(out) as staging:
        (staging / "result.txt").write_text("first")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], cwd=REPO_ROOT, env=ENV, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
    try:
        assert holder.stdout.readline() == "holding\n"
        with pytest.raises(OutputInUseError) as refused, output_lock(out):
            pytest.fail("a second holder got the lock")
        assert holder.poll() is None  # refused while the first run was still running: it did not wait for it
    finally:
        holder.kill()  # SIGKILL: no clean-up runs; the kernel releases its lock
        holder.wait()
    host = re.escape(socket.gethostname())
    since = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+"
    assert re.fullmatch(
        rf"{re.escape(str(out.resolve()))}: in use by another run \(host {host}, pid {holder.pid}, since {since}\); "
        "wait for it to end",
        one_line(refused.value),
    )
    assert is_user_error(refused.value)  # a command prints it as its one error line and exits 2
    assert beside(out) == [f".out.incomplete-{socket.gethostname()}-{holder.pid}", ".out.owner"]  # the dead run's
    with output_lock(out):  # the next run gets the lock and removes what the dead run left
        assert beside(out) == [".out.owner"]  # its own record
    assert beside(out) == []
    assert sorted(p.name for p in out.iterdir()) == [".published", "result.txt"]  # the last good output, untouched
    assert (out / "result.txt").read_text() == "first"


def test_the_lock_is_reentrant_within_a_process(tmp_path):
    with output_lock(tmp_path / "out"), publishing(tmp_path / "out") as staging:  # as eval's main and write_all do
        (staging / "a.txt").write_text("a")
    assert (tmp_path / "out" / "a.txt").read_text() == "a"


@pytest.mark.slow
def test_two_builds_started_together_on_one_output_dir_end_as_one_whole_build(tmp_path):
    release = threading.Event()
    first_call = threading.Event()

    def reply(messages, params):
        first_call.set()
        release.wait(timeout=300)  # the build holding output_dir waits here until the other one has been refused
        return f"An answer about {messages[-1]['content'][:40]}"

    rows = [json.loads(line) for line in SEED_PATH.read_text(encoding="utf-8").splitlines()[:12]]
    source = tmp_path / "prompts.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    out = tmp_path / "out"
    with LocalOpenAIServer(reply) as server:
        generator = {"backend": "openai", "model": "scripted", "base_url": server.base_url, "timeout_s": 300,
                     "deadline_s": 600}  # fmt: skip
        config = {"output_dir": str(out), "stages": ["import", "split", "generate"], "generate": {"k": 1},
                  "sources": [{"format": "jsonl", "path": str(source)}], "llm": {"generator": generator}}  # fmt: skip
        (tmp_path / "build.yaml").write_text(yaml.safe_dump(config))
        command = [sys.executable, "-m", "data_pipeline", "--config", str(tmp_path / "build.yaml")]
        builds = [subprocess.Popen(command, cwd=REPO_ROOT, env=ENV, text=True, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE) for _ in range(2)]  # fmt: skip
        deadline = time.monotonic() + 300
        while all(build.poll() is None for build in builds) and time.monotonic() < deadline:
            time.sleep(0.1)
        refused_early = [build for build in builds if build.poll() is not None]
        release.set()
        outputs = [build.communicate(timeout=300) for build in builds]
    assert len(refused_early) == 1 and first_call.is_set()  # one ended while the other was mid-generation
    (loser,) = refused_early
    (winner,) = [build for build in builds if build is not loser]
    assert winner.returncode == 0, outputs[builds.index(winner)][1][-3000:]
    assert loser.returncode == 2
    (line,) = outputs[builds.index(loser)][1].strip().splitlines()  # one line, before any stage ran
    assert line.startswith(f"python -m data_pipeline: error: {out.resolve()}: in use by another run ")
    assert f"(host {socket.gethostname()}, pid {winner.pid}, since " in line
    # One whole build: every split on disk is the one its manifest hashed, every source row is in it, nothing is left
    # beside the folder but the lock file.
    assert check_manifest(out / "dataset")[0] is None
    stats = json.loads((out / "stats.json").read_text())
    assert stats["import"]["rows"] == len(rows) and stats["generate"]["candidates"] == len(rows)
    assert beside(out) == []
