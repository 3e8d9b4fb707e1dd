"""Audit log: one JSON object per line, hash-chained, never holding secrets.

Each record has ``ts`` (ISO 8601 UTC), ``op``, ``ok``, the caller-given fields and ``prev``, the
SHA-256 of the previous line (all zeros for the first), so removing or editing a line breaks the
chain (``verify_chain``). Field values must be strings, numbers, booleans, None or lists of those:
callers pass key ids, pack names, custodian ids and error codes — never codes, keys or secrets.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_ZERO = "0" * 64
_ALLOWED = (str, int, float, bool, type(None))


def _clean(v: Any) -> Any:
    if isinstance(v, _ALLOWED):
        return v
    if isinstance(v, list | tuple) and all(isinstance(x, _ALLOWED) for x in v):
        return list(v)
    raise TypeError("audit fields must be scalars or lists of scalars")


class AuditLog:
    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._prev = _ZERO
        if self.path.exists():
            lines = self.path.read_bytes().splitlines()
            if lines:
                self._prev = hashlib.sha256(lines[-1]).hexdigest()

    def record(self, op: str, *, ok: bool, now: float, **fields: Any) -> None:
        entry: dict[str, Any] = {"ts": datetime.fromtimestamp(now, UTC).isoformat(), "op": op, "ok": ok}
        entry.update({k: _clean(v) for k, v in fields.items() if k not in entry})
        with self._lock:
            entry["prev"] = self._prev
            line = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "ab") as f:
                f.write(line + b"\n")
            self._prev = hashlib.sha256(line).hexdigest()


def read_entries(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    return [json.loads(x) for x in Path(path).read_bytes().splitlines() if x]


def verify_chain(path: str | os.PathLike[str]) -> bool:
    prev = _ZERO
    for line in Path(path).read_bytes().splitlines():
        if json.loads(line).get("prev") != prev:
            return False
        prev = hashlib.sha256(line).hexdigest()
    return True
