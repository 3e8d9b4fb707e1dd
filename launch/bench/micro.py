"""Microbenchmarks of the gateway core (no proxy, no I/O), timeit-style: ops/s and µs/op.

- protect and reveal of one field for every scheme (reveal uncached: what the first sight of a
  token costs; tagged schemes also cached: the Revealer's steady state);
- the reveal scan of whole responses (list and light), per KB and per response;
- rule matching per request (``pack.route_for(method, normalize_path(path))``);
- whole-request core work where the modules exist: ``protect_request`` of the write bodies and
  ``reveal_body`` of the list response.

A part whose module is missing (fpe, the body codecs while they are being written) is skipped with
the reason, never failed.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import workloads

REPO = Path(__file__).resolve().parents[2]
IDLE = 0.003  # seconds asleep before each call of the idle rows


def timeit(fn: Callable[[], object], min_time: float) -> tuple[float, int]:
    """Seconds per call of ``fn`` (best of three rounds), with the garbage collector off like the
    standard ``timeit`` (collector pauses are measured in the load tests, ``--gc-stats``)."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _timeit(fn, min_time)
    finally:
        if was_enabled:
            gc.enable()


def _timeit(fn: Callable[[], object], min_time: float) -> tuple[float, int]:
    fn()  # warm
    n = 1
    while True:
        t = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t
        if dt >= min_time / 10 or n >= 1 << 22:
            break
        n *= 4 if dt < min_time / 100 else 2
    best = dt / n
    total = n
    for _ in range(2):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t) / n)
        total += n
    return best, total


def timeit_idle(fn: Callable[[], object], idle: float, calls: int) -> float:
    """Median seconds per call of ``fn`` with the process idle for ``idle`` seconds before each call:
    the state a request finds at a moderate rate (at 100 req/s a proxy idles most of each 10 ms). On a
    VM the first work after an idle stretch runs several times slower than in a hot loop (presumably
    caches, TLBs and branch predictors refilling), and the in-proxy hook times follow this figure,
    not the hot one."""
    fn()
    times = []
    for _ in range(calls):
        time.sleep(idle)
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


class Rows:
    def __init__(self, min_time: float):
        self.min_time = min_time
        self.rows: list[dict] = []

    def add_idle(self, group: str, name: str, fn: Callable[[], object], idle: float, note: str = "") -> None:
        """A row timed by ``timeit_idle`` (calls: about ``min_time`` seconds' worth of idle gaps)."""
        s = timeit_idle(fn, idle, max(10, int(self.min_time / idle)))
        self.rows.append({"group": group, "name": name, "us_op": s * 1e6, "ops_s": 1 / s if s else 0.0, "note": note})

    def add(
        self,
        group: str,
        name: str,
        fn: Callable[[], object] | None,
        note: str = "",
        per: tuple[str, float] | None = None,
        skip: str | None = None,
    ) -> None:
        if skip is not None or fn is None:
            self.rows.append({"group": group, "name": name, "skipped": skip or "not available"})
            return
        try:
            s, n = timeit(fn, self.min_time)
        except Exception as e:  # a broken part is reported, the rest still runs
            self.rows.append({"group": group, "name": name, "skipped": f"{type(e).__name__}: {e}"[:200]})
            return
        row = {
            "group": group,
            "name": name,
            "us_op": s * 1e6,
            "ops_s": 1 / s if s else 0.0,
            "n": n,
            "note": note,
        }
        if per is not None:
            row["per_unit"] = per[0]
            row["us_per_unit"] = s * 1e6 / per[1]
        self.rows.append(row)


def run(ring: Any, min_time: float = 0.5) -> list[dict]:
    """Every row, with the keys of ``ring`` (a cloakgate key ring: the ones the gateway holds)."""
    from cloakgate.core import schemes, tokens
    from cloakgate.core.rules import load_pack, normalize_path

    key = ring.primary(workloads.PACK)
    rows = Rows(min_time)
    rand = os.urandom

    # --- protect / reveal per field, every scheme -------------------------------------------------
    fields: list[tuple[str, schemes.Scheme, str]] = [
        ("aead", schemes.Aead(), "Call Anna about the renewal of contract 4711 before Friday"),
        ("deterministic", schemes.Deterministic(), "Quarterly budget review"),
        ("words", schemes.Words(), "Quarterly budget review with Anna Schmidt tomorrow"),
        (
            "words (html body, 40 words)",
            schemes.Words(html=True),
            "<html><body><p>"
            + " ".join(["Please review the attached draft contract before the meeting"] * 4)
            + "</p></body></html>",
        ),
        ("email", schemes.Email(domain="protected.cloakgate.example"), "anna@contoso.example"),
    ]
    try:
        fpe = schemes.Fpe(alphabet="digits", tweak="phone")
        fpe.protect("+49 30 1234567", key, ring, rand)
        fpe_skip = None
    except ImportError as e:
        fpe, fpe_skip = None, f"fpe not available ({e.name or e})"
    for name, sch, value in fields:
        tok = sch.protect(value, key, ring, rand)
        n_tok = len(tokens.TOKEN_RE_STR.findall(tok))
        rows.add(
            "protect per field",
            name,
            lambda s=sch, v=value: s.protect(v, key, ring, rand),
            note=f"{len(value)} chars -> {len(tok)} chars, {n_tok} token(s)",
        )
        parts = [m.group() for m in tokens.TOKEN_RE_STR.finditer(tok)]
        rows.add(
            "reveal per field (uncached)",
            name,
            lambda ps=parts: [schemes.reveal_token(p, ring) for p in ps],
            note=f"{n_tok} token(s)",
        )
    rows.add(
        "protect per field",
        "fpe (phone, digits)",
        (lambda: fpe.protect("+49 30 1234567", key, ring, rand)) if fpe else None,
        skip=fpe_skip,
    )
    if fpe:
        ptxt = fpe.protect("+49 30 1234567", key, ring, rand)
        rows.add("reveal per field (uncached)", "fpe (phone, digits)", lambda: fpe.reveal(ptxt, key))
    else:
        rows.add("reveal per field (uncached)", "fpe (phone, digits)", None, skip=fpe_skip)
    mask = schemes.Mask()
    rows.add("protect per field", "mask", lambda: mask.protect("4111 1111 1111 1111", key, ring, rand))
    rows.add("reveal per field (uncached)", "mask", None, skip="irreversible by design")

    # --- reveal scan per KB and the Revealer cache ----------------------------------------------------
    bodies = workloads.build_bodies(ring)
    try:
        from cloakgate.core.reveal import Revealer, reveal_body

        reveal_skip = None
    except ImportError as e:
        Revealer = reveal_body = None  # type: ignore[assignment]  # noqa: N806
        reveal_skip = f"cloakgate.core.reveal not importable yet ({e.name or e})"
    if Revealer is not None:
        warm = Revealer(ring)
        for name, sch, value in fields:
            tok = sch.protect(value, key, ring, rand)
            warm.scan(tok.encode(), "json")
            rows.add("reveal per field (cached)", name, lambda t=tok.encode(): warm.scan(t, "json"))
    for label, body in (("list", bodies.list_body), ("light", bodies.light_body)):
        kb = len(body) / 1024
        if Revealer is None:
            rows.add("reveal scan", f"{label} cold", None, skip=reveal_skip)
            rows.add("reveal scan", f"{label} warm", None, skip=reveal_skip)
            continue
        rv = Revealer(ring)
        rv.scan(body, "json")
        rows.add(
            "reveal scan",
            f"{label} warm (cache hit)",
            lambda b=body: rv.scan(b, "json"),
            note=f"{len(body)} bytes",
            per=("KB", kb),
        )
        rows.add(
            "reveal scan",
            f"{label} cold (new Revealer)",
            lambda b=body: Revealer(ring).scan(b, "json"),
            note=f"{len(body)} bytes",
            per=("KB", kb),
        )
    no_tokens = json.dumps(
        {"value": [{"id": f"id{i}", "subject": "plain text " * 8} for i in range(60)]}
    ).encode()
    if Revealer is not None:
        rv0 = Revealer(ring)
        rows.add(
            "reveal scan",
            "no tokens (plain JSON)",
            lambda: rv0.scan(no_tokens, "json"),
            note=f"{len(no_tokens)} bytes",
            per=("KB", len(no_tokens) / 1024),
        )

    # --- rule matching per request -----------------------------------------------------------------
    pack = load_pack(REPO / "rules" / "m365.yaml")
    reqs = [
        ("POST", "/v1.0/me/sendMail"),
        ("GET", "/v1.0/me/messages?$top=10"),
        ("POST", "/v1.0/me/messages"),
        ("GET", "/v1.0/me/drive/root/children?$top=20"),
    ]
    for m, p in reqs:
        hit = pack.route_for(m, normalize_path(p))
        rows.add(
            "rule matching",
            f"{m} {p.split('?')[0]}",
            lambda m=m, p=p: pack.route_for(m, normalize_path(p)),
            note=f"-> {hit[0].name if hit else 'no route'} ({len(pack.routes)} routes)",
        )

    # --- whole-request core work -------------------------------------------------------------------
    try:
        from cloakgate.core.protect import protect_request

        protect_skip = None
    except ImportError as e:
        protect_request, protect_skip = None, f"cloakgate.core.protect not importable yet ({e.name or e})"
    write_reqs = workloads.requests_for("write", n_distinct=8)
    if protect_request is not None:

        def protect_one(raw: bytes) -> object:
            head, _, body = raw.partition(b"\r\n\r\n")
            line, *hdrs = head.decode().split("\r\n")
            method, target, _ = line.split(" ")
            headers = [tuple(h.split(": ", 1)) for h in hdrs]
            return lambda: protect_request(pack, method, target, headers, body, ring, rand)

        for raw, label in ((write_reqs[0], "POST messages"), (write_reqs[1], "POST sendMail")):
            fn = protect_one(raw)
            out = fn()
            rows.add(
                "whole request (core)",
                f"protect_request {label}",
                fn,
                note=f"{len(raw.partition(b'\r\n\r\n')[2])} bytes, {out.protected} field(s)",
            )
    else:
        rows.add("whole request (core)", "protect_request", None, skip=protect_skip)
    if reveal_body is not None:
        rv2 = Revealer(ring)
        ct = "application/json; charset=utf-8"
        rows.add(
            "whole request (core)",
            "reveal_body list (warm)",
            lambda: reveal_body(rv2, bodies.list_body, ct, None, max_size=32 << 20, pack=pack),
            note=f"{bodies.list_tokens} tokens",
        )
        rows.add(
            "whole request (core)",
            "reveal_body light (warm)",
            lambda: reveal_body(rv2, bodies.light_body, ct, None, max_size=32 << 20, pack=pack),
            note=f"{bodies.light_tokens} tokens",
        )
    else:
        rows.add("whole request (core)", "reveal_body", None, skip=reveal_skip)
    # The same, each call after 3 ms idle: what a request costs at 100 req/s (see timeit_idle).
    cold = "whole request (core, after 3 ms idle)"
    idle_note = "median; each call after 3 ms asleep"
    if protect_request is not None:
        rows.add_idle(cold, "protect_request POST messages", protect_one(write_reqs[0]), IDLE, idle_note)
    if reveal_body is not None:
        rv3 = Revealer(ring)
        for label, body in (("list", bodies.list_body), ("light", bodies.light_body)):
            rows.add_idle(cold, f"reveal_body {label} (warm cache)",
                          lambda b=body: reveal_body(rv3, b, ct, None, max_size=32 << 20, pack=pack), IDLE, idle_note)
    return rows.rows


def format_rows(rows: list[dict]) -> str:
    out = ["| group | operation | µs/op | ops/s | note |", "|---|---|---:|---:|---|"]
    for r in rows:
        if "skipped" in r:
            out.append(f"| {r['group']} | {r['name']} | – | – | skipped: {r['skipped']} |")
            continue
        note = r.get("note", "")
        if "per_unit" in r:
            note = f"{note}; {r['us_per_unit']:.1f} µs/{r['per_unit']}".lstrip("; ")
        out.append(f"| {r['group']} | {r['name']} | {r['us_op']:.2f} | {r['ops_s']:,.0f} | {note} |")
    return "\n".join(out)
