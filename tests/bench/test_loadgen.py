"""The load generator's two workers (C and Python) against a loopback server whose answers a test
chooses: the same counts from both, errors and reconnects, chunked bodies, latency from the scheduled
send time. Nothing here is timed: a stall is a lower bound that a slow machine cannot break."""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "launch" / "bench"))

pytest.importorskip("hdrh", reason="hdrhistogram (the bench extra) is not installed")

import loadgen  # noqa: E402
import workloads  # noqa: E402

BODY = b"x" * 1000
CHUNKS = (b"a" * 100, b"b" * 200, b"c" * 300)
STALL_AT, STALL_S = 150, 0.4  # the request that stops the server answering, and for how long


def _generator(name: str) -> str:
    if name == "c" and not isinstance(loadgen.c_worker(), Path):
        pytest.skip(f"the C worker does not build here: {loadgen.c_worker()}")
    return name


@pytest.fixture(params=["c", "python"])
def generator(request: pytest.FixtureRequest) -> str:
    return _generator(request.param)


class Server:
    """HTTP/1.1 on 127.0.0.1 in a thread. ``behaviour``: length, chunked, status, close (after every
    answer), drop (every 4th request closed unanswered), stall (no answers for STALL_S once)."""

    def __init__(self, behaviour: str):
        self.behaviour = behaviour
        self.requests: list[bytes] = []
        self.dropped = 0
        self.stall_until: float | None = None
        self.conns: set[_Conn] = set()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(10)

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.srv = self.loop.run_until_complete(self.loop.create_server(lambda: _Conn(self), "127.0.0.1", 0))
        self.port = self.srv.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()
        self.loop.close()

    async def _shutdown(self) -> None:
        # A connection accepted just before the server closes would leak its transport (asyncio asserts
        # in the accept task): the generators are gone, so a short wait lets every accept finish.
        await asyncio.sleep(0.05)
        self.srv.close()
        for conn in list(self.conns):
            conn.transport.abort()
        await self.srv.wait_closed()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def answer(self, n: int) -> bytes | None:
        b = self.behaviour
        if b == "drop" and n % 4 == 3:
            return None
        if b == "chunked":
            ext = [b"", b";ext=1", b""]  # a chunk extension is skipped
            parts = b"".join(b"%x%s\r\n%s\r\n" % (len(c), e, c) for c, e in zip(CHUNKS, ext))
            return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + parts + b"0\r\n\r\n"
        status = b"503 Service Unavailable" if b == "status" else b"200 OK"
        return b"HTTP/1.1 %s\r\ncontent-LENGTH: %d\r\n\r\n%s" % (status, len(BODY), BODY)


class _Conn(asyncio.Protocol):
    def __init__(self, server: Server):
        self.server = server
        self.buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.server.conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.conns.discard(self)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            head = self.buf[:end].lower()
            length = 0
            if b"content-length:" in head:
                length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
            if len(self.buf) < end + 4 + length:
                return
            req, self.buf = self.buf[: end + 4 + length], self.buf[end + 4 + length :]
            self._handle(req)

    def _handle(self, req: bytes) -> None:
        s = self.server
        n = len(s.requests)
        s.requests.append(req)
        out = s.answer(n)
        if out is None:
            s.dropped += 1
            self.transport.close()
            return
        loop = asyncio.get_running_loop()
        if s.behaviour == "stall" and n == STALL_AT:
            s.stall_until = loop.time() + STALL_S
        if s.stall_until is not None and loop.time() < s.stall_until:
            loop.call_at(s.stall_until, self._write, out)
        else:
            self._write(out)

    def _write(self, out: bytes) -> None:
        if self.transport.is_closing():
            return
        self.transport.write(out)
        if self.server.behaviour == "close":
            self.transport.close()


@pytest.fixture
def server(request: pytest.FixtureRequest):
    s = Server(request.param)
    yield s
    s.stop()


def _open(server: Server, generator: str, workload: str = "light") -> loadgen.Result:
    return loadgen.run(
        server.port, workload, mode="open", rate=200, connections=10, workers=2,
        duration=1.0, warmup=0.5, drain=3.0, generator=generator,
    )  # fmt: skip


@pytest.mark.parametrize("server", ["length"], indirect=True)
def test_open_loop_answers_every_scheduled_request(server: Server, generator: str):
    r = _open(server, generator)
    assert r.generator == generator
    assert 195 <= r.scheduled <= 205  # 200 req/s for 1 s, phases interleaved
    assert r.completed == r.ok == r.scheduled
    assert r.errors == r.non2xx == 0
    assert r.bytes_in == r.completed * len(BODY)
    assert r.lat.get_total_count() == r.svc.get_total_count() == r.completed
    assert r.lag.get_total_count() > 0  # idle connections waited for their send times
    assert r.generator_cpu_s > 0
    assert not r.notes  # the Python worker's timerfd was said to be imprecise once it was closed
    # warm-up and measured window together, every request the same bytes
    assert len(server.requests) >= r.scheduled + 90
    assert set(server.requests) == set(workloads.requests_for("light"))


@pytest.mark.parametrize("server", ["chunked"], indirect=True)
def test_chunked_bodies_are_counted_by_their_chunks(server: Server, generator: str):
    r = _open(server, generator)
    assert r.completed == r.ok == r.scheduled > 0 and r.errors == 0
    assert r.bytes_in == r.completed * sum(map(len, CHUNKS))


@pytest.mark.parametrize("server", ["status"], indirect=True)
def test_non_2xx_answers_are_counted_apart(server: Server, generator: str):
    r = _open(server, generator)
    assert r.completed == r.non2xx == r.scheduled > 0
    assert r.ok == 0 and r.errors == 0


@pytest.mark.parametrize("server", ["close"], indirect=True)
def test_a_connection_closed_after_its_answer_is_opened_again(server: Server, generator: str):
    r = _open(server, generator)
    assert r.completed == r.ok == r.scheduled > 0
    assert r.errors == 0


@pytest.mark.parametrize("server", ["drop"], indirect=True)
def test_requests_closed_unanswered_are_errors(server: Server, generator: str):
    r = _open(server, generator)
    assert r.errors > 0
    assert r.completed + r.errors == r.scheduled
    assert r.errors <= server.dropped


@pytest.mark.parametrize("server", ["stall"], indirect=True)
def test_latency_counts_from_the_scheduled_send_time(server: Server, generator: str):
    """While the server stalls, requests stay unsent on busy connections; each one's latency still
    starts at its scheduled time (no coordinated omission), so the stall shows in many of them."""
    r = _open(server, generator)
    assert r.completed == r.scheduled > 0
    # every request scheduled in the stall's first half waits at least its second half: ~20 of them
    slow = r.completed - _count_below(r.lat, int(STALL_S / 2 * 1e6))
    assert slow >= 15
    assert r.lat.get_max_value() >= STALL_S * 1e6 * 0.95


def _count_below(h, value: int) -> int:  # noqa: ANN001
    return sum(i.count_at_value_iterated_to for i in h.get_recorded_iterator() if i.value_iterated_to < value)


@pytest.mark.parametrize("server", ["length"], indirect=True)
def test_closed_loop_and_requests_with_bodies(server: Server, generator: str):
    r = loadgen.run(
        server.port, "write", mode="closed", connections=4, workers=2, duration=0.5, warmup=0.2, drain=3.0,
        generator=generator,
    )  # fmt: skip
    assert r.rate is None
    assert r.completed == r.ok == r.scheduled > 0 and r.errors == 0
    assert r.lag.get_total_count() == 0
    sent = set(server.requests)
    assert sent <= set(workloads.requests_for("write")) and len(sent) > 1


def test_auto_falls_back_to_python_when_the_c_worker_does_not_build(monkeypatch, tmp_path):  # noqa: ANN001
    monkeypatch.setattr(loadgen, "_built", {})
    monkeypatch.setattr(loadgen, "BUILD_DIR", tmp_path / "build")
    monkeypatch.setenv("CC", "false")
    assert loadgen.choose("python") == ("python", None)
    engine, why = loadgen.choose("auto")
    assert engine == "python" and "false failed" in why
    with pytest.raises(RuntimeError, match="could not be built"):
        loadgen.choose("c")
    with pytest.raises(ValueError, match="unknown generator"):
        loadgen.choose("wrk")
    assert not list((tmp_path / "build").iterdir())  # no half-built binary left behind


@pytest.mark.parametrize("server", ["length"], indirect=True)
def test_the_fallback_is_noted_in_the_result(server: Server, monkeypatch, tmp_path):  # noqa: ANN001
    monkeypatch.setattr(loadgen, "_built", {})
    monkeypatch.setattr(loadgen, "BUILD_DIR", tmp_path / "build")
    monkeypatch.setenv("CC", "false")
    r = _open(server, "auto")
    assert r.generator == "python" and r.completed == r.scheduled > 0
    assert any("C worker did not build" in n for n in r.notes)
