"""Highest sustainable rate: a closed-loop probe, then open-loop rate steps until one breaks.

A step at rate R passes when every request got a 2xx answer, at least 95 % of the requests
scheduled in the window completed, latency (from the scheduled send time) stays within the SLO
(p90 <= 50 ms and p99 <= 500 ms by default: p99 alone would measure how often a full garbage
collection, 80-120 ms in a mitmdump process on a small VM, falls into a short window, not whether
the proxy keeps up; an overloaded proxy's queue grows until p90 breaks within seconds),
and the generator kept to its schedule (send lag p99 within ``lag_limit_ms``; otherwise the step is
reported as generator-limited, not as the proxy's limit). Steps go up from 0.7 of the closed-loop
capacity in tenths (where the knees of both configurations have lain on this project's machines: 0.85 to
1.0 since the C load generator, 0.5 to 0.85 on a slower host, which the downward grid below 0.7 covers);
a step that fails narrowly is repeated once (a VM's occasional stall must not end
the ladder; a clearly overloaded step is not), and after the first failure the gap is bisected
``refine`` times. The ladders of the configurations compared (passthrough and gateway) run
interleaved, one step of each in turn, so that the machine's drift from one minute to the next hits
both alike, and climb the same rates (fractions of one reference capacity, the median of both
configurations' closed-loop rounds), so that their ratio is measured to the grid's step.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from dataclasses import dataclass

import loadgen
from procs import Proc


# What issue 4 asks of the gateway's highest sustainable rate, as a share of passthrough's per workload,
# and of N gateway processes, as a share of N x one.
TARGET_RATIOS = {"light": 0.95, "list": 0.85}
SCALE_TARGET = 0.8


@dataclass(frozen=True)
class SweepSpec:
    probe_s: float = 10.0
    step_s: float = 10.0
    warmup: float = 2.0
    connections: int = 50
    workers: int = 2
    slo_p90_ms: float = 50.0
    slo_p99_ms: float = 500.0
    lag_limit_ms: float = 5.0
    factors: tuple[float, ...] = (0.7, 0.8, 0.9, 1.0, 1.1, 1.2)
    refine: int = 3
    retries: int = 1  # a narrowly failed step is run once more before it counts
    max_rate: float = 20000.0
    drain: float = 5.0
    generator: str = "auto"  # loadgen's worker: "c", "python" or "auto"


def cpu_of(procs: Sequence[Proc]) -> float:
    return sum(p.cpu() for p in procs)


def machine_times() -> tuple[int, int] | None:
    """(busy, total) clock ticks of all the machine's cores so far, from /proc/stat; None elsewhere."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    total = sum(ticks[:8])  # guest time is counted in user already
    return total - idle, total


def busy_pct(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """How busy the machine's cores were between two ``machine_times``, in % of all of them."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return 100.0 * (after[0] - before[0]) / (after[1] - before[1])


def measured_run(
    port: int, workload: str, procs: Sequence[Proc], cpus: set[int] | None, **kw
) -> tuple[loadgen.Result, float, float | None]:
    """A load run plus the CPU the given processes used meanwhile, in % of one core, and how busy the
    whole machine was (% of all its cores: whether anything was left for the processes to take)."""
    import time

    c0, t0, m0 = cpu_of(procs), time.monotonic(), machine_times()
    r = loadgen.run(port, workload, cpus=cpus, **kw)
    c1, t1, m1 = cpu_of(procs), time.monotonic(), machine_times()
    return r, 100.0 * (c1 - c0) / max(t1 - t0, 1e-9), busy_pct(m0, m1)


def near_miss(r: loadgen.Result, spec: SweepSpec) -> bool:
    """A failure worth one more try: latency just over the bound, or the generator lagging.

    A clearly overloaded proxy (p90 more than twice the bound) or errors are not retried.
    """
    if r.errors or r.non2xx:
        return False
    return r.pct_ms(90) <= 2 * spec.slo_p90_ms and r.pct_ms(99) <= 2 * spec.slo_p99_ms


def judge(r: loadgen.Result, rate: float, spec: SweepSpec) -> tuple[bool, str]:
    if r.errors or r.non2xx:
        return False, f"{r.errors} errors, {r.non2xx} non-2xx"
    if r.scheduled and r.completed < 0.95 * r.scheduled:
        return False, f"only {r.completed}/{r.scheduled} completed"
    if r.achieved < 0.95 * rate:
        return False, f"achieved {r.achieved:.0f}/s"
    if r.lag.get_total_count() and r.pct_ms(99, "lag") > spec.lag_limit_ms:
        return False, f"generator-limited (send lag p99 {r.pct_ms(99, 'lag'):.1f} ms)"
    p90, p99 = r.pct_ms(90), r.pct_ms(99)
    if p90 > spec.slo_p90_ms:
        return False, f"p90 {p90:.1f} ms > {spec.slo_p90_ms:g} ms"
    if p99 > spec.slo_p99_ms:
        return False, f"p99 {p99:.1f} ms > {spec.slo_p99_ms:g} ms"
    return True, f"p90 {p90:.1f} ms, p99 {p99:.1f} ms"


def closed_probe(
    port: int, workload: str, procs: Sequence[Proc], spec: SweepSpec, cpus: set[int] | None
) -> dict:
    r, cpu, _ = measured_run(
        port,
        workload,
        procs,
        cpus,
        mode="closed",
        connections=spec.connections,
        workers=spec.workers,
        duration=spec.probe_s,
        warmup=spec.warmup,
        drain=spec.drain,
        generator=spec.generator,
    )
    return {
        "achieved": round(r.achieved, 1),
        "p50": r.pct_ms(50),
        "p99": r.pct_ms(99),
        "errors": r.errors + r.non2xx,
        "proxy_cpu_pct": round(cpu, 1),
        "generator_cpu_pct": r.summary()["generator_cpu_pct"],
    }


def closed_rounds(
    targets: dict[str, tuple[int, Sequence[Proc]]],
    workload: str,
    spec: SweepSpec,
    cpus: set[int] | None,
    rounds: int,
    log=print,
) -> dict[str, dict]:  # noqa: ANN001
    """Closed-loop maximum of several targets, measured in interleaved rounds (the order alternates).

    The machine's speed drifts (a VM more than most); rounds that alternate the targets expose every
    target to the same drift, and the per-round ratios cancel most of it. Returns per target the
    median round, with all rounds attached.
    """
    names = list(targets)
    got: dict[str, list[dict]] = {n: [] for n in names}
    for i in range(max(1, rounds)):
        for n in names if i % 2 == 0 else list(reversed(names)):
            port, procs = targets[n]
            got[n].append(closed_probe(port, workload, procs, spec, cpus))
        log(
            "    closed loop, round "
            + str(i + 1)
            + ": "
            + ", ".join(f"{n} {got[n][-1]['achieved']:.0f} req/s" for n in names)
        )
    out = {}
    for n in names:
        rs = sorted(got[n], key=lambda r: r["achieved"])
        med = dict(rs[len(rs) // 2])
        med["rounds"] = [r["achieved"] for r in got[n]]
        out[n] = med
    return out


def paired_ratio(a: dict, b: dict) -> float | None:
    """Median of the per-round ratios a/b of two ``closed_rounds`` results."""
    rs = sorted(x / y for x, y in zip(a.get("rounds", []), b.get("rounds", [])) if y)
    return rs[len(rs) // 2] if rs else None


DOWN_STEPS = 3


def _ladder(cap: float, spec: SweepSpec) -> Generator[float, bool, tuple[float | None, float | None]]:
    """The rates one target tries: factors of its closed-loop capacity until one fails, then the gap
    bisected ``refine`` times. When the lowest factor already fails, the grid goes on downwards by
    the factors' first gap (at most ``DOWN_STEPS`` steps) before the bisection, so that one bad
    first step costs no more resolution than a failure higher up. A generator: send back whether
    each rate passed; it returns (highest passing rate, lowest failing rate)."""
    best: float | None = None
    fail: float | None = None
    if cap <= 0:
        return best, fail
    for f in spec.factors:
        rate = round(cap * f)
        if rate < 1 or rate > spec.max_rate:
            break
        if (yield rate):
            best = rate
        else:
            fail = rate
            break
    if best is None and fail is not None and len(spec.factors) > 1:
        gap = spec.factors[1] - spec.factors[0]
        for k in range(1, DOWN_STEPS + 1):
            rate = round(cap * (spec.factors[0] - k * gap))
            if rate < 1 or rate >= fail:
                break
            if (yield rate):
                best = rate
                break
            fail = rate
    lo = best if best is not None else 0.0
    for _ in range(spec.refine if fail is not None else 0):
        mid = round((lo + fail) / 2)
        if mid <= lo or mid >= fail:
            break
        if (yield mid):
            lo = best = mid
        else:
            fail = mid
    return best, fail


def common_reference(probes: dict[str, dict]) -> float:
    """One capacity for the ladders of targets compared with each other: the median of all their
    closed-loop rounds together (each target's own rounds when it has no list of them)."""
    pooled = sorted(x for p in probes.values() for x in (p.get("rounds") or [p["achieved"]]))
    if not pooled:
        return 0.0
    mid = len(pooled) // 2
    return pooled[mid] if len(pooled) % 2 else (pooled[mid - 1] + pooled[mid]) / 2


def _grid_step(spec: SweepSpec) -> float:
    """The finest step of a ladder as a fraction of its reference: the factors' smallest gap halved
    ``refine`` times."""
    gaps = [b - a for a, b in zip(spec.factors, spec.factors[1:])] or [spec.factors[0]]
    return min(gaps) / 2**spec.refine


def sustainable_interleaved(
    targets: dict[str, tuple[int, Sequence[Proc]]],
    workload: str,
    spec: SweepSpec,
    cpus: set[int] | None,
    probes: dict[str, dict],
    log=print,
    common: bool = False,
) -> dict[str, dict]:  # noqa: ANN001
    """Open-loop ladders of several targets, one step of each in turn (the order alternating), so that
    the machine's drift from one minute to the next hits every target alike, as in ``closed_rounds``.

    Each ladder starts from a fraction of its own closed-loop capacity (``probes``); with ``common``
    every ladder climbs the same rates, fractions of ``common_reference(probes)``, so that the
    ratio of two sustainable rates is not the ratio of two noisy probes' grids: targets of equal
    capacity then get equal answers up to the grid's step, and a ratio is measured to that step."""
    names = list(targets)
    steps: dict[str, list[dict]] = {n: [] for n in names}
    out: dict[str, dict] = {}
    ref = common_reference(probes) if common else None
    ladders = {n: _ladder(ref if ref is not None else probes[n]["achieved"], spec) for n in names}
    current: dict[str, float] = {}

    def advance(n: str, ok: bool | None) -> None:
        try:
            current[n] = next(ladders[n]) if ok is None else ladders[n].send(ok)
        except StopIteration as stop:
            current.pop(n, None)
            best, fail = stop.value
            out[n] = {"closed": probes[n], "sustainable": best, "first_fail": fail, "steps": steps[n]}
            if ref is not None:
                out[n]["grid"] = {"reference": ref, "step": _grid_step(spec)}

    for n in names:
        advance(n, None)
    turn = 0
    while current:
        order = [n for n in (names if turn % 2 == 0 else reversed(names)) if n in current]
        for n in order:
            port, procs = targets[n]
            label = f"{n} " if len(names) > 1 else ""
            advance(n, _step(port, workload, procs, spec, cpus, current[n], steps[n], label, log))
        turn += 1
    return {n: out[n] for n in names}


def _step(
    port: int,
    workload: str,
    procs: Sequence[Proc],
    spec: SweepSpec,
    cpus: set[int] | None,
    rate: float,
    steps: list[dict],
    label: str = "",
    log=print,
) -> bool:  # noqa: ANN001
    """One open-loop rate step, judged; a narrowly failed step is repeated (one stall must not end
    the ladder)."""
    for attempt in range(1 + spec.retries):
        r, cpu, machine = measured_run(
            port,
            workload,
            procs,
            cpus,
            mode="open",
            rate=rate,
            connections=spec.connections,
            workers=spec.workers,
            duration=spec.step_s,
            warmup=spec.warmup,
            drain=spec.drain,
            generator=spec.generator,
        )
        ok, why = judge(r, rate, spec)
        steps.append(
            {
                "rate": rate,
                "ok": ok,
                "why": why,
                "attempt": attempt + 1,
                "achieved": round(r.achieved, 1),
                "p50": r.pct_ms(50),
                "p90": r.pct_ms(90),
                "p99": r.pct_ms(99),
                "proxy_cpu_pct": round(cpu, 1),
                "machine_busy_pct": None if machine is None else round(machine, 1),
            }
        )
        log(
            f"    {label}{rate:7.0f} req/s: {'pass' if ok else 'FAIL'} ({why}; proxy CPU {cpu:.0f} %"
            + (f", machine {machine:.0f} % busy)" if machine is not None else ")")
            + (f" [attempt {attempt + 1}]" if attempt else "")
        )
        if ok:
            return True
        if not near_miss(r, spec):
            break
    return False


def check_target(
    ladder: dict,
    rate: float,
    port: int,
    workload: str,
    procs: Sequence[Proc],
    spec: SweepSpec,
    cpus: set[int] | None,
    label: str = "",
    log=print,
) -> None:  # noqa: ANN001
    """A target's verdict where the ladder cannot give it: when ``rate`` (what a target asks of this
    configuration, rounded up) lies strictly between the ladder's highest passing and lowest failing
    rate, one more step at that very rate (judged and retried like every other) decides. Updates
    ``ladder`` in place: ``target_check`` records the step, and a pass raises ``sustainable`` to it
    (the highest rate that passed), a failure lowers ``first_fail``."""
    best, fail = ladder.get("sustainable"), ladder.get("first_fail")
    rate = math.ceil(rate - 1e-9)
    if best is None or fail is None or not best < rate < fail:
        return
    log(f"    {label}target check at {rate} req/s (between {best:.0f} passing and {fail:.0f} failing)")
    ok = _step(port, workload, procs, spec, cpus, rate, ladder["steps"], label, log)
    ladder["target_check"] = {"rate": rate, "ok": ok, "between": [best, fail]}
    if ok:
        ladder["sustainable"] = rate
    else:
        ladder["first_fail"] = rate
