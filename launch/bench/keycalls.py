"""Key-service calls per request in steady state, counted from the key service's own audit log.

The service writes one hash-chained record per call to ``audit.jsonl`` in its state directory
(``cloakgate_keys.service.audit``: ``{"op": ..., "ok": ..., ...}``). A key fetch by a gateway is one
``attest`` record (its evidence checked; the ``/auth`` nonce before it is not audited) and one
``release`` record per pack, refused ones included. ``read_counter`` counts those records; the
benchmark reads it before and after each constant-rate run of the gateway (warm-up included, after
the gateway's start-up fetch and the check), and ``measure`` reports the calls against the requests
measured. The gateway caches released keys for the lease the service gives, so the count is zero
unless a lease renewal falls into a run.

With ``--keys dev`` there is no key service: nothing is counted, and the report says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

CALL_OPS = frozenset({"attest", "release"})
COUNTED = (
    "`attest` and `release` records in the key service's audit log (`audit.jsonl`), read before and "
    "after each constant-rate run of the gateway (warm-up included): one attest per key fetch, one "
    "release per pack fetched"
)


@dataclass(frozen=True)
class Run:
    workload: str
    before: int | None  # the service's count before the run; None: the audit log could not be read
    after: int | None
    requests: int

    @property
    def calls(self) -> int | None:
        return None if self.before is None or self.after is None else self.after - self.before

    def as_dict(self) -> dict:
        return {
            "workload": self.workload,
            "calls": self.calls,
            "before": self.before,
            "after": self.after,
            "requests": self.requests,
        }


def read_counter(audit: Path | None) -> int | None:
    """Calls the key service has recorded so far, or None without a (readable) audit log.

    Only complete lines count: a record being appended is counted by the next read."""
    if audit is None:
        return None
    try:
        data = audit.read_bytes()
    except OSError:
        return None
    n = 0
    for line in data[: data.rfind(b"\n") + 1].splitlines():
        try:
            op = json.loads(line).get("op")
        except (ValueError, AttributeError):
            return None  # not the format this counts: say "not measured" rather than guess
        if op in CALL_OPS:
            n += 1
    return n


def measure(source: str, runs: list[Run]) -> dict:
    """The figure for results.json and the report: calls, requests, calls per request, and what was
    counted. ``calls`` is an integer only when every run was counted."""
    requests = sum(r.requests for r in runs)
    out = {"source": source, "runs": [r.as_dict() for r in runs], "requests": requests}
    if source == "dev":
        return {
            **out,
            "calls": None,
            "per_request": None,
            "counted": "nothing: no key service",
            "text": "0 by construction (dev key ring: keys derived locally at start-up, no key service)",
        }
    out["counted"] = COUNTED
    if not runs or any(r.calls is None for r in runs) or requests <= 0:
        return {
            **out,
            "calls": None,
            "per_request": None,
            "text": "not measured (the key service's audit log could not be read, or no request completed)",
        }
    calls = sum(r.calls or 0 for r in runs)
    each = ", ".join(f"{r.workload} {r.calls}/{r.requests}" for r in runs)
    return {
        **out,
        "calls": calls,
        "per_request": calls / requests,
        "text": f"{calls / requests:.4g} ({calls} calls / {requests} requests; per run {each}; "
        f"{runs[0].before} recorded before the first run: the start-up fetches)",
    }
