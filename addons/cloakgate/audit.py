"""Audit events: JSON lines (time, flow, pack, route, action, outcome, counts). Never values.

Writes are buffered: a routine event (a field protected, tokens revealed) reaches the file within
``buffer_seconds`` (the gateway also flushes on a timer and at shut-down), so the request path does
not pay a system call per event. A refusal or any other outcome than "ok" is written through at
once. ``buffer_seconds=0`` writes every event through.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


_encode = json.JSONEncoder(separators=(",", ":")).encode  # one encoder: json.dumps with options builds one per call
_second: list[Any] = [None, ""]  # the current second and its ISO 8601 text


def _now() -> str:
    """UTC time, ISO 8601 with milliseconds (as datetime.isoformat(timespec="milliseconds") writes it)."""
    t = time.time()
    sec = int(t)
    if sec != _second[0]:
        _second[:] = [sec, datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")]
    return f"{_second[1]}.{int((t - sec) * 1000):03d}+00:00"


class AuditLog:
    def __init__(self, path: str | None, *, buffer_seconds: float = 0.0):
        self.path = Path(path).expanduser() if path else None
        self.buffer_seconds = buffer_seconds
        self._fh: Any = None
        self._lock = threading.Lock()
        self._flushed = time.monotonic()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._fh = os.fdopen(fd, "a", buffering=1 << 16, encoding="utf-8")

    def write(self, action: str, outcome: str = "ok", **fields: Any) -> None:
        event = {"time": _now(), "action": action, "outcome": outcome}
        event.update({k: v for k, v in fields.items() if v is not None})
        line = _encode(event)
        if self._fh is None:
            logger.info("audit %s", line)
            return
        with self._lock:
            self._fh.write(line + "\n")
            now = time.monotonic()
            if outcome != "ok" or action == "refuse" or now - self._flushed >= self.buffer_seconds:
                self._fh.flush()
                self._flushed = now

    def flush(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.flush()
                self._flushed = time.monotonic()

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None
