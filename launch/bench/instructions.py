"""Instructions per request inside mitmdump, counted by valgrind's callgrind (``--instructions``).

Throughput on a shared 2-core machine moves by ±15 % from run to run; an instruction count by a
few percent (the load's few connections are set up once per count, and their cost is spread over
however many requests completed; a full garbage collection falls inside a count or not). Per
workload, a passthrough mitmdump and a gateway run under callgrind with instrumentation off:
start-up, then a warm-up load (every distinct request twice at least, so caches are in their steady
state), then instrumentation on, a closed-loop load over a few connections, a dump. Instructions
per request = (the dump's total - the proxy's idle count over as many seconds) / requests
completed; the idle count is taken just before the load, once the proxy's start-up work has ended.

passthrough / gateway is then the share of its throughput a CPU-bound proxy keeps with the
gateway: what the sustainable-rate ratio estimates, without the noise. Timers that run per second,
not per request (the rules watcher, the key refresh), are off in these runs: under valgrind a
second holds fifty times fewer requests, so they would weigh fifty times too much.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import loadgen
import procs

VALGRIND_OPTS = ("--tool=callgrind", "--instr-atstart=no", "--vgdb=yes")
GATEWAY_TIMERS_OFF = ("--set", "cloakgate_rules_poll=0", "--set", "cloakgate_keys_refresh=0")
_TOTAL = re.compile(rb"^(?:summary|totals):\s+(\d+)", re.MULTILINE)


@dataclass(frozen=True)
class Spec:
    warmup: float = 6.0  # seconds per warm-up load (instrumentation off: about 5x slower than native)
    warmup_requests: int = 128  # warm-up loads until this many completed (every distinct write request twice)
    duration: float = 20.0  # seconds of counted load (instrumentation on: about 50x slower)
    connections: int = 4
    start_timeout: float = 300.0
    idle_window: float = 2.0  # seconds per count of the proxy doing nothing
    # instructions per second below which it counts as idle: start-up work done, and the warm-up's
    # connections closed (about 1 M instructions per second of a window; a gateway's timers: ~0.15 M)
    idle_quiet: float = 4e5
    idle_max: float = 120.0  # seconds to wait for that


def valgrind_path() -> str | None:
    return shutil.which("valgrind")


def parse_total(dump: bytes) -> int | None:
    """The instruction total of a callgrind dump (its ``summary:`` or ``totals:`` line)."""
    m = _TOTAL.search(dump)
    return int(m.group(1)) if m else None


def _control(pid: int, *args: str) -> None:
    subprocess.run(
        ["callgrind_control", *args, str(pid)],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120,
    )


def _dumped_total(out_file: Path, n: int, timeout: float = 30.0) -> int | None:
    """The total of the ``n``-th dump (``<out_file>.<n>``), once callgrind has written it whole; each
    dump holds what was counted since the one before (or the last zeroing)."""
    deadline = time.monotonic() + timeout
    while True:
        dump = Path(f"{out_file}.{n}")
        total = parse_total(dump.read_bytes()) if dump.exists() else None
        if total is not None or time.monotonic() > deadline:
            return total
        time.sleep(0.5)


def _idle(pid: int, out_file: Path, spec: Spec) -> dict[str, Any]:
    """The proxy counted while it does nothing, window by window, until a window is quiet: start-up
    work (mitmproxy checking its CA key, fifty times slower under callgrind) can run for many seconds
    after the port opens, and would otherwise land in the load's count. The quiet rate (the per-second
    timers of mitmproxy and of the addon) is what the load's count has too, per second, not per
    request: a proxy that handles fewer requests per second under callgrind would carry more of it."""
    waited, n = 0.0, 0
    while True:
        t0 = time.monotonic()
        time.sleep(spec.idle_window)
        _control(pid, "--dump")
        dt = time.monotonic() - t0
        n += 1
        total = _dumped_total(out_file, n)
        if total is None:
            raise RuntimeError("callgrind wrote no dump with a total")
        waited += dt
        quiet = total / dt < spec.idle_quiet
        if quiet or waited >= spec.idle_max:
            return {"per_s": total / dt, "waited_s": waited, "settled": quiet, "dumps": n}


def measure(
    start: Callable[[list[str]], procs.Proc],
    stop: Callable[[procs.Proc], None],
    workload: str,
    out_file: Path,
    spec: Spec,
    cpus: set[int] | None,
) -> dict[str, Any]:
    """One proxy under callgrind: ``start(wrap)`` starts it (listening) with ``wrap`` before its
    command line, ``stop`` stops it. Returns instructions, requests and instructions per request."""
    vg = valgrind_path()
    assert vg is not None
    proc = start([vg, *VALGRIND_OPTS, f"--callgrind-out-file={out_file}"])
    try:
        load = dict(mode="closed", connections=spec.connections, workers=1, drain=60.0, cpus=cpus)
        warmed, deadline = 0, time.monotonic() + 20 * spec.warmup
        while warmed < spec.warmup_requests and time.monotonic() < deadline:
            warmed += loadgen.run(proc.port, workload, duration=spec.warmup, warmup=0.0, **load).completed
        _control(proc.pid, "--instr=on")
        idle = _idle(proc.pid, out_file, spec)
        _control(proc.pid, "--zero")
        t0 = time.monotonic()
        r = loadgen.run(proc.port, workload, duration=spec.duration, warmup=0.0, **load)
        _control(proc.pid, "--dump")
        counted_s = time.monotonic() - t0
        total = _dumped_total(out_file, idle["dumps"] + 1)
    finally:
        stop(proc)
    if total is None:
        return {"error": "callgrind wrote no dump with a total"}
    if not r.completed or r.errors or r.non2xx:
        return {"error": f"{r.completed} requests completed, {r.errors} errors, {r.non2xx} not 2xx"}
    idle_total = idle["per_s"] * counted_s
    return {
        "instructions": total,
        "requests": r.completed,
        "per_request": max(0.0, total - idle_total) / r.completed,
        "raw_per_request": total / r.completed,
        "idle_per_s": idle["per_s"],
        "idle_per_request": idle_total / r.completed,
        "idle_waited_s": idle["waited_s"],
        "idle_settled": idle["settled"],
        "warmup_requests": warmed,
        "seconds": counted_s,
    }


def ratios(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per workload: passthrough and gateway instructions per request, what the gateway adds, and
    passthrough / gateway."""
    by: dict[str, dict[str, Any]] = {}
    for row in rows:
        if "per_request" in row:
            by.setdefault(row["workload"], {})[row["config"]] = row["per_request"]
    out = {}
    for wl, v in by.items():
        if "passthrough" in v and "gateway" in v:
            pt, gw = v["passthrough"], v["gateway"]
            out[wl] = {"passthrough": pt, "gateway": gw, "added": gw - pt, "added_pct": 100 * (gw - pt) / pt,
                       "ratio": pt / gw}
    return out
