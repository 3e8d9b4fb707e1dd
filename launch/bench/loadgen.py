"""Load generator: wrk2-style constant rate (open loop) and wrk-style closed loop, over keep-alive
HTTP/1.1 connections, on asyncio protocols. One worker is one process (``python loadgen.py JSON``);
``run()`` starts ``workers`` of them and merges their HdrHistograms.

Open loop (like wrk2): every connection owns a fixed schedule of send times (the total rate is
spread over all connections, phases interleaved). A connection sends its next request at its
scheduled time, or at once when the previous response came back late; latency is measured from the
**scheduled** time, so a slow server cannot hide its queue (no coordinated omission). Send lag
(actual minus scheduled send while the connection was idle) is recorded too: when it grows, the
generator itself is the bottleneck and the step says so.

Closed loop (like wrk): every connection sends its next request as soon as the previous response
arrived; the result is the highest throughput at that concurrency.

Two implementations of one worker, same model, counts and output: ``cgen.c`` (C, epoll and a timerfd;
built on first use with the machine's C compiler) and ``worker()`` below (Python asyncio). The C one is
the default where it builds: on a 2-core machine the generator shares the cores with the proxies it
measures, and the Python worker's ~130 µs of CPU per request (C: ~30) is taken from them.

Latencies are in microseconds. All traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from hdrh.histogram import HdrHistogram

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import workloads  # noqa: E402

HIST_MAX_US = 3_600_000_000
GENERATORS = ("auto", "c", "python")
# Where the C worker is built: inside the checkout, not a shared temp folder, where another user could
# plant a binary under the predictable name that the benchmark (often run as root) would then execute.
BUILD_DIR = HERE / ".build"


def new_hist() -> HdrHistogram:
    return HdrHistogram(1, HIST_MAX_US, 3)


class Timer:
    """Wake-ups at exact loop times. asyncio's own timers wake up to ~1 ms late (epoll takes
    milliseconds, rounded up), which would add a millisecond to every open-loop latency; a timerfd
    (Python 3.13+, Linux) armed for the earliest deadline wakes the loop within microseconds.
    Falls back to ``asyncio.sleep`` where timerfd is missing."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.heap: list[tuple[float, int, asyncio.Future]] = []
        self.seq = itertools.count()
        self.armed: float | None = None
        self.fd: int | None = None
        if hasattr(os, "timerfd_create") and _loop_clock_is_monotonic(loop):
            self.fd = os.timerfd_create(time.CLOCK_MONOTONIC, flags=os.TFD_NONBLOCK | os.TFD_CLOEXEC)
            loop.add_reader(self.fd, self._fire)

    @property
    def precise(self) -> bool:
        return self.fd is not None

    async def sleep_until(self, when: float) -> None:
        if self.fd is None:
            await asyncio.sleep(max(0.0, when - self.loop.time()))
            return
        fut = self.loop.create_future()
        heapq.heappush(self.heap, (when, next(self.seq), fut))
        if self.armed is None or when < self.armed:
            self._arm(when)
        await fut

    def _arm(self, when: float) -> None:
        self.armed = when
        os.timerfd_settime(self.fd, flags=os.TFD_TIMER_ABSTIME, initial=max(when, 1e-6))

    def _fire(self) -> None:
        try:
            os.read(self.fd, 8)
        except BlockingIOError:
            pass
        now = self.loop.time()
        heap = self.heap
        while heap and heap[0][0] <= now:
            fut = heapq.heappop(heap)[2]
            if not fut.done():
                fut.set_result(None)
        if heap:
            self._arm(heap[0][0])
        else:
            self.armed = None

    def close(self) -> None:
        if self.fd is not None:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = None


def _loop_clock_is_monotonic(loop: asyncio.AbstractEventLoop) -> bool:
    a = time.monotonic()
    b = loop.time()
    c = time.monotonic()
    return a <= b <= c


class ClientConn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; one request in flight at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.buf = bytearray()
        self.waiter: asyncio.Future | None = None
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        w = self.waiter
        if w is not None and not w.done():
            try:
                r = self._parse()
            except ValueError as e:
                w.set_exception(e)
                return
            if r is not None:
                w.set_result(r)

    def _parse(self) -> tuple[int, bytes] | None:
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(buf[:end]).lower()
        status = int(head[9:12])
        i = head.find(b"\r\ncontent-length:")
        if i >= 0:
            j = head.find(b"\r\n", i + 2)
            total = end + 4 + int(head[i + 17 : j if j >= 0 else None])
            if len(buf) < total:
                return None
            body = bytes(buf[end + 4 : total])
            del buf[:total]
            return status, body
        if b"\r\ntransfer-encoding: chunked" in head:
            pos = end + 4
            chunks = []
            while True:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    return None
                size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
                if size == 0:
                    fin = buf.find(b"\r\n\r\n", eol - 2 if eol >= 2 else eol)
                    if fin < 0:
                        return None
                    del buf[: fin + 4]
                    return status, b"".join(chunks)
                if len(buf) < eol + 2 + size + 2:
                    return None
                chunks.append(bytes(buf[eol + 2 : eol + 2 + size]))
                pos = eol + 2 + size + 2
        if status in (204, 304) or status < 200:
            del buf[: end + 4]
            return status, b""
        raise ValueError("response without length")

    async def request(self, data: bytes) -> tuple[int, bytes]:
        if self.closed:
            raise ConnectionError("connection closed")
        self.waiter = self.loop.create_future()
        self.transport.write(data)
        return await self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


@dataclass
class Tally:
    lat: HdrHistogram = field(default_factory=new_hist)  # from scheduled send (open) / send (closed)
    svc: HdrHistogram = field(default_factory=new_hist)  # from actual send
    lag: HdrHistogram = field(default_factory=new_hist)  # actual send minus scheduled, when idle
    scheduled: int = 0  # requests scheduled inside the measured window
    completed: int = 0  # responses (any status) to requests scheduled inside the window
    ok: int = 0  # 2xx among them
    non2xx: int = 0
    errors: int = 0  # connection errors, timeouts, malformed responses
    bytes_in: int = 0

    def response(self, status: int, body: bytes, lat_us: int, svc_us: int) -> None:
        """One answered request of the measured window."""
        self.completed += 1
        self.bytes_in += len(body)
        self.lat.record_value(lat_us)
        self.svc.record_value(svc_us)
        if 200 <= status < 300:
            self.ok += 1
        else:
            self.non2xx += 1


def _us(seconds: float) -> int:
    """A latency in microseconds, clamped to what the histograms hold."""
    return max(1, min(HIST_MAX_US, int(seconds * 1e6)))


async def _connect(loop: asyncio.AbstractEventLoop, port: int) -> ClientConn:
    _, proto = await loop.create_connection(lambda: ClientConn(loop), "127.0.0.1", port)
    return proto


async def _open_conn(
    cfg: dict,
    reqs: list[bytes],
    k: int,
    conn: ClientConn,
    t0: float,
    t_warm: float,
    t_end: float,
    tally: Tally,
    timer: Timer,
) -> None:
    loop = asyncio.get_running_loop()
    total_conns, rate, w, workers = cfg["total_connections"], cfg["rate"], cfg["worker"], cfg["workers"]
    g = w + k * workers  # global connection index: phases interleave across workers
    interval = total_conns / rate
    offset = g / rate
    i = 0
    try:
        while True:
            sched = t0 + offset + i * interval
            if sched >= t_end:
                return
            measured = sched >= t_warm
            if measured:
                tally.scheduled += 1
            now = loop.time()
            if sched > now:
                await timer.sleep_until(sched)
                sent = loop.time()
                if measured:
                    tally.lag.record_value(max(1, int((sent - sched) * 1e6)))
            else:
                sent = now
            req = reqs[(g + i * total_conns) % len(reqs)]
            i += 1
            try:
                if conn.closed:
                    conn = await _connect(loop, cfg["port"])
                status, body = await conn.request(req)
            except (OSError, ConnectionError, ValueError):
                if measured:
                    tally.errors += 1
                conn.close()
                conn = await _connect(loop, cfg["port"])
                continue
            done = loop.time()
            if measured:
                tally.response(status, body, _us(done - sched), _us(done - sent))
    finally:
        conn.close()


async def _closed_conn(
    cfg: dict, reqs: list[bytes], k: int, conn: ClientConn, t_warm: float, t_end: float, tally: Tally
) -> None:
    loop = asyncio.get_running_loop()
    g = cfg["worker"] + k * cfg["workers"]
    i = 0
    try:
        while loop.time() < t_end:
            req = reqs[(g + i * cfg["total_connections"]) % len(reqs)]
            i += 1
            sent = loop.time()
            try:
                if conn.closed:
                    conn = await _connect(loop, cfg["port"])
                status, body = await conn.request(req)
            except (OSError, ConnectionError, ValueError):
                if sent >= t_warm:
                    tally.errors += 1
                conn.close()
                await asyncio.sleep(0.01)
                conn = await _connect(loop, cfg["port"])
                continue
            done = loop.time()
            if sent >= t_warm and done <= t_end:
                tally.scheduled += 1
                us = _us(done - sent)
                tally.response(status, body, us, us)
    finally:
        conn.close()


async def worker(cfg: dict) -> dict:
    """Run one worker's share of the connections. ``cfg`` comes from ``run``."""
    loop = asyncio.get_running_loop()
    reqs = workloads.requests_for(cfg["workload"])
    tally = Tally()
    n = len(range(cfg["worker"], cfg["total_connections"], cfg["workers"]))
    conns = await asyncio.gather(*(_connect(loop, cfg["port"]) for _ in range(n)))
    # Ready: connections are open. The parent answers with the common start time once all are ready.
    print("READY", flush=True)
    start_at = float(sys.stdin.readline())
    t0 = loop.time() + max(0.0, start_at - time.time())
    t_warm = t0 + cfg["warmup"]
    t_end = t_warm + cfg["duration"]
    cpu0 = os.times()
    timer = Timer(loop)
    if cfg["mode"] == "open":
        tasks = [
            asyncio.ensure_future(_open_conn(cfg, reqs, k, conns[k], t0, t_warm, t_end, tally, timer))
            for k in range(n)
        ]
    else:
        tasks = [
            asyncio.ensure_future(_closed_conn(cfg, reqs, k, conns[k], t_warm, t_end, tally))
            for k in range(n)
        ]
    done, pending = await asyncio.wait(tasks, timeout=max(0.0, t_end - loop.time()) + cfg["drain"])
    timeouts = 0
    for t in pending:  # requests still waiting after the drain time: counted as errors
        t.cancel()
        timeouts += 1
    if pending:
        await asyncio.wait(pending, timeout=2)
    crashed = [repr(t.exception()) for t in done if not t.cancelled() and t.exception() is not None]
    cpu1 = os.times()
    precise = timer.precise
    timer.close()
    return {
        "lat": tally.lat.encode().decode(),
        "svc": tally.svc.encode().decode(),
        "lag": tally.lag.encode().decode(),
        "scheduled": tally.scheduled,
        "completed": tally.completed,
        "ok": tally.ok,
        "non2xx": tally.non2xx,
        "errors": tally.errors + timeouts + len(crashed),
        "timeouts": timeouts,
        "crashed": crashed[:3],
        "bytes_in": tally.bytes_in,
        "precise_timer": precise if cfg["mode"] == "open" else None,
        "cpu_s": (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system),
    }


# --- the C worker -----------------------------------------------------------------------------------

_built: dict[str, Path | str] = {}  # source hash -> the binary, or why it did not build


def c_worker() -> Path | str:
    """The C worker's binary, built once per source text (cached in ``BUILD_DIR``, so every process
    and every run of the same source share it), or a string saying why it could not be built."""
    src = HERE / "cgen.c"
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
    if digest in _built:
        return _built[digest]
    exe = BUILD_DIR / f"cgen-{digest}"
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if exe.exists():
        _built[digest] = exe
    elif cc is None:
        _built[digest] = "no C compiler (cc, gcc or $CC)"
    else:
        BUILD_DIR.mkdir(mode=0o700, exist_ok=True)
        part = exe.with_name(f"{exe.name}.{os.getpid()}")
        r = subprocess.run([cc, "-O2", "-o", str(part), str(src), "-lm"], capture_output=True, text=True)
        if r.returncode == 0:
            os.replace(part, exe)
            _built[digest] = exe
        else:
            part.unlink(missing_ok=True)
            last = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
            _built[digest] = f"{Path(cc).name} failed: {last}"
    return _built[digest]


def choose(generator: str) -> tuple[str, str | None]:
    """("c" or "python", why the C worker is not used) for a ``--generator`` choice; "c" insists."""
    if generator not in GENERATORS:
        raise ValueError(f"unknown generator {generator!r} (one of {', '.join(GENERATORS)})")
    if generator == "python":
        return "python", None
    exe = c_worker()
    if isinstance(exe, Path):
        return "c", None
    if generator == "c":
        raise RuntimeError(f"the C load generator could not be built: {exe}")
    return "python", exe


def _request_file(reqs: list[bytes]) -> Path:
    """The requests for the C worker: each a 4-byte little-endian length, then its bytes."""
    fd, name = tempfile.mkstemp(prefix="cloakgate-reqs-")
    with os.fdopen(fd, "wb") as f:
        for r in reqs:
            f.write(len(r).to_bytes(4, "little") + r)
    return Path(name)


def _c_output(text: str) -> dict:
    """The C worker's output as the Python worker's dict (histograms built here)."""
    lines = text.strip().splitlines()
    out = json.loads(lines[-4])
    for line in lines[-3:]:
        name, *values = line.split()
        h = new_hist()
        for v in values:
            h.record_value(int(v))
        out[name] = h
    out["precise_timer"] = True
    return out


def _py_output(text: str) -> dict:
    out = json.loads(text.strip().splitlines()[-1])
    for name in ("lat", "svc", "lag"):
        out[name] = HdrHistogram.decode(out[name].encode())
    return out


# --- parent side ------------------------------------------------------------------------------------


@dataclass
class Result:
    mode: str
    workload: str
    rate: float | None  # target rate (open loop)
    connections: int
    workers: int
    duration: float
    lat: HdrHistogram
    svc: HdrHistogram
    lag: HdrHistogram
    scheduled: int
    completed: int
    ok: int
    non2xx: int
    errors: int
    bytes_in: int
    generator_cpu_s: float
    notes: list[str] = field(default_factory=list)
    generator: str = "python"  # which worker measured: "c" or "python"

    @property
    def achieved(self) -> float:
        return self.completed / self.duration if self.duration else 0.0

    def pct_ms(self, p: float, hist: str = "lat") -> float:
        return getattr(self, hist).get_value_at_percentile(p) / 1000.0

    def summary(self) -> dict:
        h = self.lat
        return {
            "mode": self.mode,
            "workload": self.workload,
            "rate": self.rate,
            "connections": self.connections,
            "workers": self.workers,
            "duration": self.duration,
            "achieved": round(self.achieved, 1),
            "p50": self.pct_ms(50),
            "p90": self.pct_ms(90),
            "p99": self.pct_ms(99),
            "p999": self.pct_ms(99.9),
            "max": h.get_max_value() / 1000.0 if h.get_total_count() else 0.0,
            "mean": h.get_mean_value() / 1000.0,
            "svc_p50": self.pct_ms(50, "svc"),
            "svc_p99": self.pct_ms(99, "svc"),
            "lag_p99": self.pct_ms(99, "lag"),
            "scheduled": self.scheduled,
            "completed": self.completed,
            "ok": self.ok,
            "non2xx": self.non2xx,
            "errors": self.errors,
            "bytes_in": self.bytes_in,
            "generator_cpu_pct": round(100.0 * self.generator_cpu_s / max(self.duration, 1e-9), 1),
            "generator": self.generator,
            "notes": self.notes,
        }


def merge(results: list[Result]) -> Result:
    """One result from runs of the same configuration (segments): histograms added, counts summed."""
    first = results[0]
    if len(results) == 1:
        return first
    hists = {}
    for name in ("lat", "svc", "lag"):
        h = new_hist()
        for r in results:
            h.add(getattr(r, name))
        hists[name] = h
    total = {
        k: sum(getattr(r, k) for r in results)
        for k in ("duration", "scheduled", "completed", "ok", "non2xx", "errors", "bytes_in", "generator_cpu_s")
    }
    notes = [n for r in results for n in r.notes]
    return replace(first, **hists, **total, notes=notes)


def run(
    port: int,
    workload: str,
    *,
    mode: str = "open",
    rate: float = 100.0,
    connections: int = 50,
    workers: int = 2,
    duration: float = 120.0,
    warmup: float = 2.0,
    drain: float = 5.0,
    cpus: set[int] | None = None,
    generator: str = "auto",
) -> Result:
    """Run ``workers`` generator processes against 127.0.0.1:``port`` and merge what they measured.
    ``generator``: "auto" (C where it builds, else Python, with a note), "c" or "python"."""
    workers = max(1, min(workers, connections))
    engine, why_not_c = choose(generator)
    procs = []
    outs = []
    reqfile = _request_file(workloads.requests_for(workload)) if engine == "c" else None
    try:
        for w in range(workers):
            cfg = {
                "port": port,
                "workload": workload,
                "mode": mode,
                "rate": rate,
                "total_connections": connections,
                "workers": workers,
                "worker": w,
                "warmup": warmup,
                "duration": duration,
                "drain": drain,
            }
            if reqfile is not None:
                argv = [str(c_worker())] + [
                    str(cfg[k]) for k in ("port", "mode", "rate", "total_connections", "workers", "worker")
                ]
                argv += [repr(float(cfg[k])) for k in ("warmup", "duration", "drain")] + [str(reqfile)]
            else:
                argv = [sys.executable, str(HERE / "loadgen.py"), json.dumps(cfg)]
            procs.append(
                subprocess.Popen(
                    argv,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    preexec_fn=_child_setup(cpus),
                )
            )
        for p in procs:  # each worker says READY once its connections are open (bounded by a timer)
            line = _readline(p, 30.0)
            if line.strip() != b"READY":
                p.kill()
                err = p.stderr.read().decode(errors="replace") if p.stderr else ""
                raise RuntimeError(f"load generator worker did not start: {line!r} {err[-2000:]}")
        start_at = time.time() + 0.02
        for p in procs:
            p.stdin.write(f"{start_at}\n".encode())
            p.stdin.flush()
        limit = warmup + duration + drain + 30
        for p in procs:
            out, err = p.communicate(timeout=max(5.0, limit))
            if p.returncode != 0:
                raise RuntimeError(f"load generator worker failed ({p.returncode}): {err.decode()[-2000:]}")
            outs.append((_c_output if reqfile is not None else _py_output)(out.decode()))
            limit = 10
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)
        if reqfile is not None:
            reqfile.unlink(missing_ok=True)
    lat, svc, lag = new_hist(), new_hist(), new_hist()
    notes: list[str] = [f"Python generator: the C worker did not build ({why_not_c})"] if why_not_c else []
    for o in outs:
        lat.add(o["lat"])
        svc.add(o["svc"])
        lag.add(o["lag"])
        notes += [f"worker task crashed: {c}" for c in o["crashed"]]
        if o.get("precise_timer") is False and "asyncio timers (~1 ms late)" not in notes:
            notes.append("asyncio timers (~1 ms late)")
        if o["timeouts"]:
            notes.append(f"{o['timeouts']} connection(s) still waiting after the drain time")
    return Result(
        mode,
        workload,
        rate if mode == "open" else None,
        connections,
        workers,
        duration,
        lat,
        svc,
        lag,
        sum(o["scheduled"] for o in outs),
        sum(o["completed"] for o in outs),
        sum(o["ok"] for o in outs),
        sum(o["non2xx"] for o in outs),
        sum(o["errors"] for o in outs),
        sum(o["bytes_in"] for o in outs),
        sum(o["cpu_s"] for o in outs),
        notes,
        engine,
    )


def _readline(p: subprocess.Popen, timeout: float) -> bytes:
    import selectors

    with selectors.DefaultSelector() as sel:
        sel.register(p.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            return b""
    return p.stdout.readline()


def _child_setup(cpus: set[int] | None):  # noqa: ANN202
    def setup() -> None:
        from procs import die_with_parent

        die_with_parent()
        if cpus:
            os.sched_setaffinity(0, cpus)

    return setup


if __name__ == "__main__":
    result = asyncio.run(worker(json.loads(sys.argv[1])))
    print(json.dumps(result), flush=True)
