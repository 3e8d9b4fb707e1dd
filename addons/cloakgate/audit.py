"""Audit events: JSON lines (time, flow, pack, route, action, outcome, counts). Never values.

Writes are buffered: a routine event (a field protected, tokens revealed) reaches the file within
``buffer_seconds`` (the gateway also flushes on a timer and at shut-down), so the request path does
not pay a system call per event. A refusal or any other outcome than "ok" is written through at
once. ``buffer_seconds=0`` writes every event through.

The request path only queues an event (its time, action, outcome and fields); events are turned into
JSON lines when they are written, in one batch, off the hooks of the requests they describe. At most
``MAX_PENDING`` events wait; the next one writes them.
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


_encode = json.JSONEncoder(separators=(",", ":")).encode
_second: list[Any] = [None, ""]  # the current second and its ISO 8601 text


def _not_json(o: Any) -> Any:
    raise TypeError(f"{type(o).__name__} is not JSON")


# The C encoder that JSONEncoder.encode builds on every call (with these very options), built once: an
# event line costs half as much (counted in instructions). No check for circular containers: events
# are flat, and one would end in RecursionError, which _line treats like any unencodable field.
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_c_encode = (
    _c_make_encoder(None, _not_json, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, True)
    if _c_make_encoder is not None else None
)


def _encode_event(event: dict[str, Any]) -> str:
    return "".join(_c_encode(event, 0)) if _c_encode is not None else _encode(event)


def _iso(t: float) -> str:
    """UTC time, ISO 8601 with milliseconds (as datetime.isoformat(timespec="milliseconds") writes it)."""
    sec = int(t)
    if sec != _second[0]:
        _second[:] = [sec, datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")]
    return f"{_second[1]}.{int((t - sec) * 1000):03d}+00:00"


def _line(t: float, action: str, outcome: str, fields: dict[str, Any]) -> str:
    """An event as one JSON object: time, action, outcome, then the fields that are not None, in order
    (byte for byte what ``json.JSONEncoder(separators=(",", ":")).encode`` writes for that dict)."""
    when = _iso(t)
    event = {"time": when, "action": action, "outcome": outcome}
    if None in fields.values():
        event.update({k: v for k, v in fields.items() if v is not None})
    else:
        event.update(fields)
    try:
        return _encode_event(event)
    except (TypeError, ValueError, RecursionError):  # not JSON: the event keeps its fields' names only
        return _encode({"time": when, "action": action, "outcome": outcome, "unencodable": sorted(fields)})


_escape = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
_REVEAL = (
    '{"time":"%s","action":"reveal","outcome":"ok","flow":%s,"pack":%s,"route":%s,'
    '"counts":{"revealed":%d,"truncated":%d,"invalid":%d}}'
)


def _reveal_line(t: float, flow: Any, pack: Any, route: Any, revealed: Any, truncated: Any,
                 invalid: Any) -> str:
    """A reveal event (``AuditLog.reveal``): byte for byte the line ``_line`` writes for it, from a
    template (less than half the cost: one event per response)."""
    names_are_text = type(flow) is type(pack) is type(route) is str
    if names_are_text and type(revealed) is type(truncated) is type(invalid) is int:
        return _REVEAL % (_iso(t), _escape(flow), _escape(pack), _escape(route), revealed, truncated, invalid)
    return _line(t, "reveal", "ok", _reveal_fields(flow, pack, route, revealed, truncated, invalid))


def _reveal_fields(flow: Any, pack: Any, route: Any, revealed: Any, truncated: Any,
                   invalid: Any) -> dict[str, Any]:
    return {"flow": flow, "pack": pack, "route": route,
            "counts": {"revealed": revealed, "truncated": truncated, "invalid": invalid}}


class AuditLog:
    MAX_PENDING = 1024

    def __init__(self, path: str | None, *, buffer_seconds: float = 0.0):
        self.path = Path(path).expanduser() if path else None
        self.buffer_seconds = buffer_seconds
        self._fh: Any = None
        self._lock = threading.Lock()
        # write(): (time, action, outcome, fields); reveal(): (time, flow, pack, route, three counts)
        self._pending: list[tuple[Any, ...]] = []
        self._flushed = time.monotonic()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._fh = os.fdopen(fd, "a", buffering=1 << 16, encoding="utf-8")

    def write(self, action: str, outcome: str = "ok", **fields: Any) -> None:
        if self._fh is None:
            logger.info("audit %s", _line(time.time(), action, outcome, fields))
            return
        with self._lock:
            self._pending.append((time.time(), action, outcome, fields))
            now = time.monotonic()
            if (outcome != "ok" or action == "refuse" or now - self._flushed >= self.buffer_seconds
                    or len(self._pending) >= self.MAX_PENDING):
                self._write_pending(now)

    def reveal(self, flow: str, pack: str, route: str | None, revealed: int, truncated: int, invalid: int,
               outcome: str = "ok") -> None:
        """``write("reveal", outcome, flow=..., pack=..., route=..., counts={...})``; a response revealed
        without error, the most frequent event, is queued as a bare tuple."""
        if self._fh is None or outcome != "ok":
            self.write("reveal", outcome, **_reveal_fields(flow, pack, route, revealed, truncated, invalid))
            return
        with self._lock:
            self._pending.append((time.time(), flow, pack, route, revealed, truncated, invalid))
            now = time.monotonic()
            if now - self._flushed >= self.buffer_seconds or len(self._pending) >= self.MAX_PENDING:
                self._write_pending(now)

    def _write_pending(self, now: float) -> None:
        """Encode and write the queued events, in order (the caller holds the lock)."""
        events, self._pending = self._pending, []
        if self._fh is not None:
            self._fh.write("".join([(_line(*e) if len(e) == 4 else _reveal_line(*e)) + "\n" for e in events]))
            self._fh.flush()
        self._flushed = now

    def flush(self) -> None:
        with self._lock:
            self._write_pending(time.monotonic())

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._write_pending(time.monotonic())
                self._fh.close()
                self._fh = None
