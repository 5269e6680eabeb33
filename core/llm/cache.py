"""Content-addressed call cache: one JSON file per completed call, in sharded folders.

``<root>/<key[:2]>/<key>.json`` where key = sha256 of everything that determines the answer (see ``LLM._key``).
A write goes to a temp file in the same folder, is fsynced, then ``os.replace``d into place: readers see either no
file or a whole one, so a process killed with SIGKILL at any instant leaves no corrupt entry (at most an orphan
``.tmp-*`` file, which readers ignore and ``CallCache`` removes when it is old). Concurrent writers (threads or
processes, same key or not) are safe for the same reason: the last rename wins and every version is complete.
"""

import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)
ORPHAN_TMP_AGE_S = 3600  # temp files this old belong to a dead writer


class CallCache:
    """Maps a hex key to a JSON object. ``root=None`` keeps entries in memory for this process only."""

    def __init__(self, root: str | Path | None):
        self.root = Path(root) if root is not None else None
        self._memory: dict[str, dict] = {}
        self._lock = threading.Lock()
        if self.root is not None:
            self.root.mkdir(parents=True, exist_ok=True)
            self._remove_orphans()

    def path(self, key: str) -> Path:
        assert self.root is not None
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        if self.root is None:
            with self._lock:
                return self._memory.get(key)
        path = self.path(key)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            # Cannot come from our writes (atomic rename); a hand-edited or foreign file: recompute and overwrite.
            log.warning("call cache: %s is not valid JSON (%s); recomputing this call", path, err)
            return None

    def put(self, key: str, value: dict) -> None:
        if self.root is None:
            with self._lock:
                self._memory[key] = value
            return
        path = self.path(key)
        path.parent.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)  # no .json suffix: never globbed as an entry
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(value, handle, ensure_ascii=False, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def __len__(self) -> int:
        if self.root is None:
            return len(self._memory)
        return sum(1 for _ in self.root.glob("??/*.json"))

    def _remove_orphans(self) -> None:
        now = time.time()
        for tmp in self.root.glob("??/.tmp-*"):
            try:
                if now - tmp.stat().st_mtime > ORPHAN_TMP_AGE_S:
                    tmp.unlink()
            except FileNotFoundError:
                pass  # another process removed it first
