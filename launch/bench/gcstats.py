"""A mitmdump script for ``--gc-stats``: logs every garbage collection of generation 2 (and any
collection over 5 ms) with its duration, so the report can show the event-loop stalls that the
collector causes. Loaded into every measured mitmdump only when asked for; it holds no state beyond
a start time.

    mitmdump -s launch/bench/gcstats.py ...
"""

import gc
import sys
import time

_start: list[float] = [0.0]


def _callback(phase: str, info: dict) -> None:
    if phase == "start":
        _start[0] = time.perf_counter()
        return
    ms = (time.perf_counter() - _start[0]) * 1000
    if info["generation"] == 2 or ms > 5:
        sys.stderr.write(f"cloakgate-bench gc: gen{info['generation']} {ms:.1f} ms\n")
        sys.stderr.flush()


gc.callbacks.append(_callback)


def parse(log_text: str) -> dict:
    """Count and size of the collections a log shows, per generation."""
    out: dict = {}
    for line in log_text.splitlines():
        if "cloakgate-bench gc: gen" not in line:
            continue
        _, _, rest = line.partition("cloakgate-bench gc: gen")
        gen, ms, _ = rest.split(" ", 2)
        d = out.setdefault(f"gen{gen}", {"count": 0, "max_ms": 0.0, "total_ms": 0.0})
        d["count"] += 1
        d["max_ms"] = max(d["max_ms"], float(ms))
        d["total_ms"] += float(ms)
    return out
