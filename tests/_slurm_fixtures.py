"""A real single-node SLURM cluster on localhost for the slurm/ tests, and helpers to submit and watch jobs.

The cluster is slurm/local_cluster.sh's (Debian slurmctld + slurmd + munge, two fake GPUs as GRES). Outside CI the
tests skip when the binaries are missing; with CI=true a missing cluster is a failure, so CI cannot go green without
running them.
"""

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

LOCAL_CLUSTER = REPO_ROOT / "slurm" / "local_cluster.sh"
BINARIES = ("slurmctld", "slurmd", "sbatch", "scontrol", "munged")
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL"}


def _unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"SLURM tests must run in CI: {reason} (.ci/run installs the packages)")
    pytest.skip(reason)


def _sbin_path() -> str:
    return f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"


class LocalCluster:
    """Starts the local cluster unless it already runs; stops it afterwards only if it started it."""

    def __init__(self):
        missing = [b for b in BINARIES if shutil.which(b, path=_sbin_path()) is None]
        if missing:
            _unavailable(f"SLURM binaries not installed: {', '.join(missing)} (run: slurm/local_cluster.sh install)")
        self.sudo = []
        if os.geteuid() != 0:
            if subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode != 0:
                _unavailable("the local SLURM cluster needs root or password-less sudo (daemons, fake GPU devices)")
            self.sudo = ["sudo", "-n", "--preserve-env=PATH"]
        status = self._script("status").stdout
        self.started_here = "slurmctld: running" not in status
        start = self._script("start")
        if start.returncode != 0:
            pytest.fail(f"slurm/local_cluster.sh start failed:\n{start.stdout}\n{start.stderr}")
        self.jobs: list[str] = []
        nodes = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True).stdout
        self.nodes = sorted(set(nodes.split()))

    def _script(self, command: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "PATH": _sbin_path()}
        return subprocess.run(
            [*self.sudo, str(LOCAL_CLUSTER), command], capture_output=True, text=True, env=env, timeout=120
        )

    def sbatch(self, args: list[str], env: dict | None = None) -> str:
        """Submit from the repository root; returns the job id (also remembered for cleanup)."""
        proc = subprocess.run(
            ["sbatch", "--parsable", *args],
            cwd=REPO_ROOT,
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, f"sbatch {' '.join(args)} failed: {proc.stderr}{self.nodes_report()}"
        job = proc.stdout.strip().split(";")[0]
        self.jobs.append(job)
        return job

    def run(self, cmd: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
        """A command (submit_pipeline.sh, scancel, ...) from the repository root with the test environment.
        submit_pipeline.sh runs every stage's preflight first (one Python process importing torch and TRL)."""
        return subprocess.run(
            cmd, cwd=REPO_ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=180
        )

    def nodes_report(self) -> str:
        """The nodes as slurmctld sees them (CPUs, memory, GRES, state), for a failed submission's message."""
        out = subprocess.run(["scontrol", "show", "nodes", "-o"], capture_output=True, text=True).stdout
        return f"\nnodes (nproc here: {os.cpu_count()}):\n{out}"

    def _records(self, job_id: str) -> list[dict[str, str]]:
        """`scontrol show job -o` as one dict per line (JobState, ExitCode, Restarts, Dependency, ...)."""
        out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True).stdout
        return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in out.strip().splitlines()]

    def job(self, job_id: str) -> dict[str, str]:
        """The job's scontrol record ({} once slurmctld forgot it); array jobs: the first task's."""
        return next(iter(self._records(job_id)), {})

    def array_tasks(self, job_id: str) -> dict[str, dict[str, str]]:
        """Per-task scontrol records of an array job, keyed by ArrayTaskId."""
        return {r["ArrayTaskId"]: r for r in self._records(job_id) if "ArrayTaskId" in r}

    def wait(self, job_id: str, timeout: float, until=None) -> dict[str, str]:
        """Poll until `until(record)` (default: a final state) holds; fail with the job record on timeout."""
        until = until or (lambda r: r.get("JobState") in FINAL_STATES)
        deadline = time.monotonic() + timeout
        record = {}
        while time.monotonic() < deadline:
            record = self.job(job_id)
            if until(record):
                return record
            time.sleep(0.5)
        pytest.fail(f"job {job_id} not done within {timeout:.0f} s: {record}")

    def wait_for_file(self, job_id: str, path: Path, timeout: float) -> None:
        """Poll until a running job has written `path`; fail at once if the job ends first."""
        deadline = time.monotonic() + timeout
        while not path.exists():
            record = self.job(job_id)
            if record.get("JobState") in FINAL_STATES:
                pytest.fail(f"job {job_id} ended ({record.get('JobState')}) before writing {path}")
            if time.monotonic() > deadline:
                pytest.fail(f"{path} did not appear within {timeout:.0f} s: {record}")
            time.sleep(0.2)

    def close(self):
        live = [j for j in self.jobs if self.job(j).get("JobState") not in FINAL_STATES]
        if live:
            subprocess.run(["scancel", *live], capture_output=True)
        if self.started_here:
            self._script("stop")
