"""The fake Outlook: a minimal HTTP/1.1 keep-alive server on asyncio protocols (no framework).

It serves precomputed responses, so it stays far from being the bottleneck (measured in the
"direct" configuration). Run as a process of its own::

    python upstream.py --lifetime 600

It reads its data keys from stdin (``keypipe``: the benchmark writes them into a pipe, so key
material never touches a file) and makes the responses' tokens with them. It prints one JSON line
``{"port": ..., "list_tokens": ...}`` when it listens, and exits by itself after ``--lifetime``
seconds or when its parent dies. It listens on 127.0.0.1 only.

Routes: ``GET .../messages?...$top=50`` (light), ``GET .../messages`` (list), ``POST .../sendMail``
(202), ``POST .../messages`` (201, echoes the created message), ``GET /_bench/last`` (the last POST
body as received, for the check that the gateway sent no plaintext upstream).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import keypipe  # noqa: E402
import workloads  # noqa: E402

_JSON = b"Content-Type: application/json; charset=utf-8\r\n"


def response(status: str, body: bytes, ctype: bool = True) -> bytes:
    return (
        b"HTTP/1.1 "
        + status.encode()
        + b"\r\nServer: fake-graph\r\n"
        + (_JSON if ctype else b"")
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


class App:
    def __init__(self, bodies: workloads.Bodies):
        self.list_resp = response("200 OK", bodies.list_body)
        self.light_resp = response("200 OK", bodies.light_body)
        self.accepted = response("202 Accepted", b"", ctype=False)
        self.not_found = response("404 Not Found", b'{"error":{"code":"NotFound"}}')
        self.last_post = b""
        self.requests = 0
        self._n = 0

    def handle(self, method: bytes, target: bytes, body: bytes) -> bytes:
        self.requests += 1
        path, _, query = target.partition(b"?")
        if method == b"GET":
            if path.endswith(b"/messages"):
                return self.light_resp if b"top=50" in query else self.list_resp
            if path == b"/_bench/last":
                return response("200 OK", self.last_post)
            return self.not_found
        if method == b"POST":
            self.last_post = body
            if path.endswith(b"/sendMail"):
                return self.accepted
            if path.endswith(b"/messages") and body[:1] == b"{":
                self._n += 1
                created = b'{"id":"AAMkAGI2NEW' + str(self._n).encode() + b'=",' + body[1:]
                return response("201 Created", created)
        return self.not_found


class Conn(asyncio.Protocol):
    def __init__(self, app: App):
        self.app = app
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > 65536:
                    self.transport.close()
                return
            head = bytes(buf[:end])
            line, _, rest = head.partition(b"\r\n")
            parts = line.split(b" ")
            if len(parts) != 3:
                self.transport.close()
                return
            lower = rest.lower()
            cl = 0
            i = lower.find(b"content-length:")
            if i >= 0:
                j = lower.find(b"\r\n", i)
                cl = int(lower[i + 15 : j if j >= 0 else None].strip())
            if b"transfer-encoding: chunked" in lower:  # not used by the bench clients
                self.transport.write(response("411 Length Required", b""))
                self.transport.close()
                return
            total = end + 4 + cl
            if len(buf) < total:
                return
            body = bytes(buf[end + 4 : total])
            del buf[:total]
            self.transport.write(self.app.handle(parts[0], parts[1], body))
            if b"connection: close" in lower:
                self.transport.close()
                return


async def serve(ring: object, port: int, lifetime: float) -> None:
    bodies = workloads.build_bodies(ring)
    app = App(bodies)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Conn(app), "127.0.0.1", port, backlog=1024)
    real_port = server.sockets[0].getsockname()[1]
    print(
        json.dumps(
            {
                "port": real_port,
                "list_tokens": bodies.list_tokens,
                "list_truncated": bodies.list_truncated,
                "list_bytes": len(bodies.list_body),
                "light_tokens": bodies.light_tokens,
                "light_bytes": len(bodies.light_body),
            }
        ),
        flush=True,
    )
    stop = asyncio.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), lifetime)
    except TimeoutError:
        pass
    server.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--lifetime", type=float, default=3600.0, help="exit after this many seconds")
    a = ap.parse_args()
    os.nice(0)
    ring = keypipe.read(sys.stdin.buffer)
    asyncio.run(serve(ring, a.port, a.lifetime))


if __name__ == "__main__":
    main()
