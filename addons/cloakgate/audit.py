"""Audit events: JSON lines (time, flow, pack, route, action, outcome, counts). Never values."""

from __future__ import annotations

import json
import logging
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class AuditLog:
    def __init__(self, path: str | None):
        self.path = Path(path).expanduser() if path else None
        self._fh: Any = None
        self._lock = threading.Lock()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._fh = os.fdopen(fd, "a", buffering=1, encoding="utf-8")

    def write(self, action: str, outcome: str = "ok", **fields: Any) -> None:
        event = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), "action": action, "outcome": outcome}
        event.update({k: v for k, v in fields.items() if v is not None})
        line = json.dumps(event, separators=(",", ":"), sort_keys=False)
        if self._fh is None:
            logger.info("audit %s", line)
            return
        with self._lock:
            self._fh.write(line + "\n")

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
