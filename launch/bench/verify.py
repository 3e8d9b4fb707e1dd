"""Before measuring: one request of each kind through each configuration, checked.

For the gateway this proves the numbers are about a working gateway: the client gets plaintext
back (no complete token left in the list and light responses, only the ones ``bodyPreview`` cut
short), the upstream received tokens and none of the plaintext words, those tokens name the primary
key of the benchmark's key ring (the gateway holds the keys the benchmark got: from the key service,
or the same development key ring), and the audit log counts what was revealed and protected per
request.
"""

from __future__ import annotations

import http.client
import json
import time
from pathlib import Path
from typing import Any

import workloads


def _tokens(data: bytes) -> tuple[int, int]:
    complete, truncated, _ = _scan(data)
    return complete, truncated


def _scan(data: bytes) -> tuple[int, int, set[str]]:
    """Complete tokens, truncated ones, and the key ids the complete ones name."""
    from cloakgate.core import tokens

    complete = truncated = 0
    kids: set[str] = set()
    for m in tokens.TOKEN_RE.finditer(data):
        try:
            parsed, _ = tokens.split(m.group().decode())
            complete += 1
            kids.add(parsed.kid)
        except Exception:
            truncated += 1
    return complete, truncated, kids


def _send(port: int, raw: bytes) -> tuple[int, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    line, *hdrs = head.decode().split("\r\n")
    method, target, _ = line.split(" ")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request(method, target, body=body or None, headers=dict(h.split(": ", 1) for h in hdrs))
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def _last_audit(audit: Path, action: str, wait: float = 3.0) -> dict | None:
    """The latest audit event of ``action``; waits for the gateway's audit buffer (1 s) to be written."""
    deadline = time.monotonic() + wait
    while True:
        try:
            lines = audit.read_text().splitlines()
        except OSError:
            lines = []
        for line in reversed(lines):
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("action") == action:
                return ev
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)


def check(config: str, port: int, upstream_port: int, audit: Path | None, info: dict, ring: Any) -> dict:
    """Returns {"ok": bool, "problems": [...], facts...}; ``ring`` is the benchmark's key ring."""
    problems: list[str] = []
    facts: dict = {}
    gateway = config.startswith("gateway")
    st, body = _send(port, workloads.requests_for("list")[0])
    complete, truncated = _tokens(body)
    facts["list_status"] = st
    facts["list_tokens_left"] = complete
    if st != 200:
        problems.append(f"list answered {st}")
    if gateway:
        ev = _last_audit(audit, "reveal") if audit else None
        facts["list_revealed"] = (ev or {}).get("counts", {}).get("revealed")
        facts["list_truncated_left"] = truncated
        if complete:
            problems.append(
                f"{complete} complete token(s) left in the list response: the gateway did not reveal "
                "(did addons/gateway.py load?)"
            )
    elif complete != info.get("list_tokens"):
        problems.append(f"list response holds {complete} tokens, expected {info.get('list_tokens')}")
    st, body = _send(port, workloads.requests_for("light")[0])
    complete, _ = _tokens(body)
    if st != 200 or (gateway and complete):
        problems.append(f"light: status {st}, {complete} token(s) left")
    reqs = workloads.requests_for("write", n_distinct=2)
    for raw, want in ((reqs[0], 201), (reqs[1], 202)):
        st, _ = _send(port, raw)
        if st != want:
            problems.append(f"{raw.split(b' ', 2)[1].decode()} answered {st}, expected {want}")
        _, received = _send(upstream_port, b"GET /_bench/last HTTP/1.1\r\nHost: upstream\r\n\r\n")
        doc = json.loads(raw.partition(b"\r\n\r\n")[2])
        subject = (doc.get("message") or doc)["subject"]
        plain_words = [
            w for w in subject.replace(".", " ").replace("!", " ").replace("?", " ").split() if len(w) > 3
        ]
        leaked = [w for w in plain_words if w.encode() in received]
        up_tokens, _, kids = _scan(received)
        if gateway:
            ev = _last_audit(audit, "protect") if audit else None
            facts.setdefault("fields_protected", []).append((ev or {}).get("counts", {}).get("fields"))
            if leaked:
                problems.append("plaintext reached the upstream")
            if up_tokens < 10:
                problems.append(f"only {up_tokens} token(s) reached the upstream")
            primary = ring.primary(workloads.PACK).kid
            if kids - {primary}:
                problems.append(
                    f"the gateway protected with key id(s) {sorted(kids - {primary})}, not the primary "
                    f"{primary!r} of the benchmark's keys"
                )
        facts.setdefault("upstream_tokens_per_post", []).append(up_tokens)
    facts["ok"] = not problems
    facts["problems"] = problems
    return facts
