"""The key service's HTTPS server: TLS 1.3 only, RA-TLS certificate, one thread per connection.

``http.server`` in threads: the listening socket accepts plain TCP; the TLS handshake runs in the
connection's own thread (a slow peer cannot stall the accept loop); every socket has a timeout and
at most ``max_connections`` are served at once;
``stop()`` stops the loop, closes the listener and joins the connection threads.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .app import KeyServiceApp, Request
from .protocol import MAX_BODY
from .ratls import RatlsIdentity

log = logging.getLogger("cloakgate_keys.service")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _TLSServer

    def setup(self) -> None:
        self.timeout = self.server.conn_timeout
        self.request.settimeout(self.timeout)
        self.request.do_handshake()
        super().setup()

    def _serve(self) -> None:
        self.server.count_request()
        n = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding") or (n is not None and not n.isdigit()):
            self.close_connection = True
            return self.send_error(400)
        length = int(n or 0)
        if length > MAX_BODY:
            self.close_connection = True
            return self.send_error(413)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        resp = self.server.app.handle(Request(self.command, self.path, headers, body))
        self.send_response(resp.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(resp.body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(resp.body)

    do_GET = do_POST = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
        log.debug("%s %s", self.address_string(), format % args)


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: KeyServiceApp, context: ssl.SSLContext,
                 conn_timeout: float, max_connections: int):
        self.app, self.context, self.conn_timeout = app, context, conn_timeout
        self.max_connections, self.active, self.requests = max_connections, 0, 0
        self._count_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._count_lock:
            full = self.active >= self.max_connections
            if not full:
                self.active += 1
        if full:  # bounded threads: refuse rather than queue
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._count_lock:
                self.active -= 1

    def count_request(self) -> None:
        with self._count_lock:
            self.requests += 1

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        try:
            return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr
        except BaseException:
            sock.close()
            raise

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address[0] if client_address else "?")


class KeyServer:
    """Serve ``app`` over RA-TLS on ``host:port`` (port 0: an ephemeral port) in a background thread."""

    def __init__(self, app: KeyServiceApp, identity: RatlsIdentity, host: str = "127.0.0.1", port: int = 0,
                 *, conn_timeout: float = 10.0, max_connections: int = 64):
        self.identity = identity
        self._httpd = _TLSServer((host, port), app, identity.server_context(), conn_timeout, max_connections)
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"https://{host}:{port}"

    @property
    def requests(self) -> int:
        """HTTP requests received so far (a refused client must not have sent any)."""
        return self._httpd.requests

    def start(self) -> KeyServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="cloakgate-keys-server")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> KeyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
