"""A mitmdump script for ``--hook-times``: how long the cloakgate hooks take inside the running proxy.

Load it after the gateway (``mitmdump -s addons/gateway.py -s launch/bench/hooktimes.py``). Once the
proxy runs, it replaces the gateway's flow hooks on its instance with timed
wrappers (mitmproxy looks hooks up by name on every event, so the wrappers are what it calls) and,
at shut-down, writes one line to stderr: per hook the number of calls and the p50, p90, p99 and mean
wall time in microseconds, for the calls made after the first ``cloakgate_hook_times_skip`` seconds
(the warm-up: start-up work and first-sight reveals). Garbage-collector pauses that fall inside a
hook are counted too, so a slow hook can be told from a collection that happened to start in it.

The numbers answer what a hot loop in one process cannot: what the same code costs between the
proxy's own work, at the load the benchmark applies (see the README's results section).
"""

from __future__ import annotations

import gc
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from mitmproxy import ctx

MARKER = "cloakgate-bench hooks: "
HOOKS = {
    "cloakgate.gateway": ("requestheaders", "request", "response"),
}  # (the guard stands in the chain only while no ready gateway does)


class HookTimes:
    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}
        self.gc_in_hooks = 0.0
        self.start: float | None = None
        self.skip = 0.0
        self._inside = False
        self._gc_t0 = 0.0

    def load(self, loader: Any) -> None:
        loader.add_option("cloakgate_hook_times_skip", str, "0", "Seconds of hook calls not counted (warm-up).")

    def configure(self, updated: set[str]) -> None:
        if "cloakgate_hook_times_skip" in updated:
            self.skip = float(ctx.options.cloakgate_hook_times_skip)  # a str option: mitmproxy parses no floats

    def running(self) -> None:
        for addon_name, hooks in HOOKS.items():
            addon = ctx.master.addons.get(addon_name)
            if addon is None:
                continue
            for hook in hooks:
                key = f"{addon_name.rsplit('.', 1)[-1]}.{hook}"
                setattr(addon, hook, self._timed(key, getattr(addon, hook)))
        gc.callbacks.append(self._gc)

    def _gc(self, phase: str, info: dict) -> None:
        if not self._inside:
            return
        if phase == "start":
            self._gc_t0 = time.perf_counter()
        elif self.start is not None and time.perf_counter() - self.start >= self.skip:
            self.gc_in_hooks += time.perf_counter() - self._gc_t0

    def _timed(self, key: str, hook: Callable[..., Any]) -> Callable[..., Any]:
        samples = self.samples.setdefault(key, [])
        clock = time.perf_counter

        def timed(*args: Any) -> Any:
            t0 = clock()
            if self.start is None:
                self.start = t0
            self._inside = True
            try:
                return hook(*args)
            finally:
                self._inside = False
                t1 = clock()
                if t0 - self.start >= self.skip:
                    samples.append(t1 - t0)

        return timed

    def summary(self) -> dict:
        out: dict[str, Any] = {"hooks": {}, "gc_in_hooks_ms": round(self.gc_in_hooks * 1000, 3)}
        for key, xs in self.samples.items():
            if not xs:
                continue
            s = sorted(xs)
            out["hooks"][key] = {
                "calls": len(s),
                **{f"p{q}": round(s[min(len(s) - 1, int(len(s) * q / 100))] * 1e6, 1) for q in (50, 90, 99)},
                "mean": round(sum(s) / len(s) * 1e6, 1),
            }
        return out

    def done(self) -> None:
        sys.stderr.write(MARKER + json.dumps(self.summary()) + "\n")
        sys.stderr.flush()


def parse(log_text: str) -> dict | None:
    """The summary a log holds (the last one), or None."""
    found = None
    for line in log_text.splitlines():
        i = line.find(MARKER)
        if i >= 0:
            found = json.loads(line[i + len(MARKER) :])
    return found


addons = [HookTimes()]
