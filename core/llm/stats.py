"""Per-role LLM call statistics and the progress bar of each LLM stage.

``llm_stats()`` is what stats.json ("llm_calls"), the dataset card and eval's report show, per role:

    {"calls": requests made through the interface (one per candidate / logprob query),
     "new": answered by a model call, "cached": answered without one (cache hit, or a repeat within one call),
     "retries": {"timeout": n, "429": n, "5xx": n, "connection": n, "other": n},  # by the cause of the failed attempt
     "failures": calls that failed for good (retries exhausted, deadline passed, a 4xx that is not retried)}

A retry is counted when the client starts another attempt after a failed one, under the failed attempt's cause:
"timeout" (no answer within timeout_s, or HTTP 408), "429" (rate limited), "5xx" (server error), "connection"
(refused, reset or dropped mid-response), "other" (409, or a server's ``x-should-retry``).

``llm_progress(name)`` opens one tqdm bar for a stage: every LLM call inside it adds to the same bar, which shows
done/total, cached, retries, failures and the rate of new calls. Outside one, each call gets its own bar.
"""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm.auto import tqdm

RETRY_CAUSES = ("timeout", "429", "5xx", "connection", "other")

_lock = threading.Lock()
_stats: dict[str, dict] = {}
_active: list["LLMProgress"] = []  # the innermost open stage bar, if any


def _record(role: str) -> dict:
    if role not in _stats:
        _stats[role] = {"calls": 0, "new": 0, "cached": 0, "retries": dict.fromkeys(RETRY_CAUSES, 0), "failures": 0}
    return _stats[role]


def count(role: str, kind: str, number: int = 1) -> None:
    """Add to "new", "cached" or "failures" ("new" and "cached" add to "calls" too)."""
    with _lock:
        record = _record(role)
        record[kind] += number
        if kind in ("new", "cached"):
            record["calls"] += number
    if _active:
        _active[-1].add(kind, number)


def count_retry(role: str, cause: str) -> None:
    with _lock:
        _record(role)["retries"][cause] += 1
    if _active:
        _active[-1].add("retries", 1)


def llm_stats() -> dict[str, dict]:
    """{role: {"calls", "new", "cached", "retries": {cause: n}, "failures"}} since process start."""
    with _lock:
        return {role: {**record, "retries": dict(record["retries"])} for role, record in _stats.items()}


def stats_since(before: dict[str, dict], roles: list[str]) -> dict[str, dict]:
    """This run's share of ``llm_stats()`` for ``roles``, given a snapshot taken at its start."""
    now = llm_stats()
    out = {}
    for role in roles:
        new, old = now.get(role, {}), before.get(role, {})
        out[role] = {kind: new.get(kind, 0) - old.get(kind, 0) for kind in ("calls", "new", "cached")}
        out[role]["retries"] = {
            cause: new.get("retries", {}).get(cause, 0) - old.get("retries", {}).get(cause, 0) for cause in RETRY_CAUSES
        }
        out[role]["failures"] = new.get("failures", 0) - old.get("failures", 0)
    return out


class LLMProgress:
    """One bar; created on the first call so that a stage without LLM calls shows none."""

    def __init__(self, description: str):
        self.description = description
        self.total = self.done = self.cached = self.retries = self.failures = self.new = 0
        self._bar: tqdm | None = None
        self._start = time.monotonic()
        self._lock = threading.Lock()

    def requested(self, number: int) -> None:
        with self._lock:
            self.total += number
            if self._bar is None:
                self._bar = tqdm(total=0, desc=self.description, unit="call", disable=None, leave=False,
                                 bar_format="{desc}: {n}/{total} {bar} [{elapsed}<{remaining}]{postfix}")  # fmt: skip
            self._bar.total = self.total
            self._refresh()

    def add(self, kind: str, number: int) -> None:
        """kind: "cached" (done without a call), "new" (a finished call), "retries" or "failures"."""
        with self._lock:
            setattr(self, kind, getattr(self, kind) + number)
            if kind in ("cached", "new"):
                self.done += number
                if self._bar is not None:
                    self._bar.update(number)
            self._refresh()

    def postfix(self) -> str:
        rate = self.new / max(time.monotonic() - self._start, 1e-9)
        return f"cached={self.cached} retries={self.retries} failed={self.failures} {rate:.2f} calls/s"

    def _refresh(self) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(self.postfix(), refresh=False)  # drawn by update(), at tqdm's own pace

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@contextmanager
def llm_progress(description: str) -> Iterator[LLMProgress]:
    """Every LLM call inside shares one bar named ``description`` (a pipeline stage, an eval phase)."""
    progress = LLMProgress(description)
    _active.append(progress)
    try:
        yield progress
    finally:
        _active.remove(progress)
        progress.close()


@contextmanager
def call_progress(description: str, calls: int) -> Iterator[LLMProgress]:
    """The bar a batch of ``calls`` requests reports to: the open stage's, or its own for this batch."""
    owner = None if _active else llm_progress(description)
    progress = _active[-1] if owner is None else owner.__enter__()
    try:
        progress.requested(calls)
        yield progress
    finally:
        if owner is not None:
            owner.__exit__(None, None, None)


def llm_calls_section(calls: dict) -> list[str]:
    """Markdown lines, per role: calls (new + cached), retries by cause and failures (stats.json "llm_calls"; also
    in eval's report.md)."""
    if not calls:
        return []
    causes = list(next(iter(calls.values()))["retries"])
    rows = [[role, c["calls"], c["new"], c["cached"], *(c["retries"][k] for k in causes), c["failures"]]
            for role, c in calls.items()]  # fmt: skip
    header = ["role", "calls", "new", "cached", *(f"retries: {k}" for k in causes), "failures"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return ["## LLM calls per role (this run)", "", "\n".join(lines), ""]
