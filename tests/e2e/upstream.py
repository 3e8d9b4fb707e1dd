"""A recording upstream that behaves enough like Graph and OWA for end-to-end tests.

It stores what it receives exactly as received (so tests can check that no plaintext arrived),
returns stored records the way the SaaS would (echo on create, lists, bodyPreview truncated at 255
characters), and searches the stored text the way a SaaS search engine does: case-insensitively, on
words split at punctuation. It never sees a key.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit


class Store:
    def __init__(self) -> None:
        self.raw: list[bytes] = []  # every request as received: request line, headers, body
        self.records: dict[str, list[dict]] = {}
        self.lock = threading.Lock()

    def all_bytes(self) -> bytes:
        with self.lock:
            return b"\n".join(self.raw)

    def requests_to(self, needle: str) -> int:
        with self.lock:
            return sum(1 for r in self.raw if needle.encode() in r.split(b"\r\n", 1)[0])


def words(text: str) -> set[str]:
    return {w.lower() for w in re.findall(r"\w+", text)}


def record_text(rec: dict) -> str:
    return json.dumps(rec, ensure_ascii=False)


class Handler(BaseHTTPRequestHandler):
    server_version = "FakeSaaS/1"
    protocol_version = "HTTP/1.1"
    store: Store

    def log_message(self, *args) -> None:  # quiet
        pass

    def _body(self) -> bytes:
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(n) if n else b""

    def _record(self, body: bytes) -> None:
        head = f"{self.command} {self.path} {self.request_version}\r\n".encode() + bytes(self.headers)
        with self.store.lock:
            self.store.raw.append(head + b"\r\n" + body)

    def _send(self, status: int, obj: object | None, *, gzip_ok: bool = False) -> None:
        data = b"" if obj is None else json.dumps(obj, ensure_ascii=False).encode()
        headers = {"content-type": "application/json; charset=utf-8"}
        if gzip_ok and "gzip" in (self.headers.get("accept-encoding") or "") and data:
            data = gzip.compress(data)
            headers["content-encoding"] = "gzip"
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._record(b"")
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        coll = url.path.rstrip("/")
        with self.store.lock:
            items = list(self.store.records.get(coll.lower(), []))
        if "$search" in q:
            terms = words(q["$search"].strip('"'))
            items = [r for r in items if terms <= words(record_text(r))]
        if "$filter" in q:
            m = re.fullmatch(r"(\w+) eq '((?:[^']|'')*)'", q["$filter"])
            if not m:
                return self._send(400, {"error": {"code": "BadRequest"}})
            prop, lit = m.group(1), m.group(2).replace("''", "'")
            items = [r for r in items if str(r.get(prop, "")).lower() == lit.lower()]
        self._send(200, {"@odata.context": "fake", "value": items}, gzip_ok=True)

    def _create(self, coll: str, rec: dict) -> dict:
        with self.store.lock:
            lst = self.store.records.setdefault(coll.lower(), [])
            rec = dict(rec)
            rec["id"] = f"id{len(lst) + 1}"
            body = rec.get("body")
            if isinstance(body, dict) and isinstance(body.get("content"), str):
                rec["bodyPreview"] = re.sub(r"<[^>]*>", "", body["content"])[:255]
            lst.append(rec)
        return rec

    def do_POST(self) -> None:
        body = self._body()
        self._record(body)
        url = urlsplit(self.path)
        path = url.path.rstrip("/")
        if path.lower().endswith("/owa/service.svc"):
            return self._owa(body)
        if path.lower().endswith("/$batch"):
            return self._batch(body)
        if path == "/aura":
            return self._aura(body)
        if "json" not in (self.headers.get("content-type") or "json"):
            return self._echo(body)
        try:
            doc = json.loads(body) if body else {}
        except ValueError:
            return self._send(400, {"error": {"code": "BadRequest"}})
        if path.lower().endswith("/sendmail"):
            msg = next((v for k, v in doc.items() if k.lower() == "message"), {})
            self._create(path.rsplit("/", 1)[0] + "/messages", msg)
            return self._send(202, None)
        self._send(201, self._create(path, doc))

    def _echo(self, body: bytes) -> None:
        self._send(200, {"received": body.decode("latin-1")})

    def _aura(self, body: bytes) -> None:
        """Salesforce Aura: the record comes back behind the anti-hijacking prefix."""
        message = json.loads(parse_qs(body.decode())["message"][0])
        fields = message["actions"][0]["params"]["recordInput"]["fields"]
        out = {"actions": [{"id": "1;a", "state": "SUCCESS",
                            "returnValue": {"fields": {k: {"value": v} for k, v in fields.items()}}}]}
        data = b"while(1);\n" + json.dumps(out).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json;charset=UTF-8")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PATCH(self) -> None:
        body = self._body()
        self._record(body)
        self._send(200, json.loads(body or b"{}"))

    def _owa(self, body: bytes) -> None:
        raw = self.headers.get("x-owa-urlpostdata")
        doc = json.loads(unquote(raw)) if raw else json.loads(body)
        items = doc.get("Body", {}).get("Items", [])
        with self.store.lock:
            self.store.records.setdefault("owa", []).extend(items)
        self._send(200, {"Body": {"ResponseMessages": {"Items": [{"Items": items, "ResponseClass": "Success"}]}}})

    def _batch(self, body: bytes) -> None:
        doc = json.loads(body)
        responses = []
        for r in doc.get("requests", []):
            b = r.get("body")
            if isinstance(b, str):
                b = json.loads(base64.b64decode(b))
            rec = self._create("/v1.0" + urlsplit(r["url"]).path, b or {})
            responses.append({"id": r.get("id"), "status": 201, "body": rec})
        self._send(200, {"responses": responses})


class Upstream:
    def __init__(self, tls_context: ssl.SSLContext | None = None):
        self.store = Store()
        handler = type("H", (Handler,), {"store": self.store})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        if tls_context is not None:
            self.server.socket = tls_context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Upstream:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
