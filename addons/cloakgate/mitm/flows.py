"""Small helpers shared by the adapters: scope, local refusals, flow annotations."""

from __future__ import annotations

import json
import logging

from mitmproxy import http

from ..core.rules import Pack

logger = logging.getLogger("cloakgate")

M_SEEN = "cloakgate.seen"  # the gateway's request hook looked at this flow
M_PACK = "cloakgate.pack"
M_ROUTE = "cloakgate.route"
M_REFUSED = "cloakgate.refused"  # error code of a local refusal
M_PROTECTED = "cloakgate.protected"  # number of fields protected
MARK_PROTECTED = ":lock:"
MARK_REFUSED = ":no_entry:"


def flow_hosts(flow: http.HTTPFlow) -> tuple[str, ...]:
    """The names a request is addressed to: the Host header and the connection's destination."""
    req = flow.request
    hosts = {req.pretty_host.lower().rstrip("."), req.host.lower().rstrip(".")}
    return tuple(h for h in hosts if h)


def find_pack(packs: tuple[Pack, ...], host_map: dict[str, str], flow: http.HTTPFlow) -> Pack | None:
    hosts = flow_hosts(flow)
    for h in hosts:
        pid = host_map.get(h)
        if pid is not None:
            for p in packs:
                if p.id == pid:
                    return p
    for p in packs:
        if any(p.match_host(h) for h in hosts):
            return p
    return None


def headers_get(headers: http.Headers, *names: bytes) -> tuple[str | None, ...]:
    """``headers.get(name)`` for each of ``names`` (lower case; repeated headers folded with ", " as
    mitmproxy does): one pass over the raw fields, a fraction of the multidict look-ups' cost on a
    path that asks several times per flow."""
    found: list[bytes | None] = [None] * len(names)
    for k, v in headers.fields:
        k = k.lower()
        if k in names:
            i = names.index(k)
            old = found[i]
            found[i] = v if old is None else old + b", " + v
    return tuple([None if v is None else v.decode("utf-8", "surrogateescape") for v in found])


def set_content_length(headers: http.Headers, n: int) -> None:
    """``headers["content-length"] = str(n)`` straight on the raw fields (half the multidict's cost):
    every Content-Length field gets the value; one is added if there was none."""
    cl = b"%d" % n
    out, found = [], False
    for k, v in headers.fields:
        if k.lower() == b"content-length":
            out.append((k, cl))
            found = True
        else:
            out.append((k, v))
    if not found:
        out.append((b"content-length", cl))
    headers.fields = tuple(out)


def header(headers: http.Headers, name: bytes) -> str | None:
    """One header's value (see ``headers_get``), by one comprehension over the raw fields."""
    values = [v for k, v in headers.fields if k.lower() == name]
    if not values:
        return None
    return (values[0] if len(values) == 1 else b", ".join(values)).decode("utf-8", "surrogateescape")


def host_header(req: http.Request) -> str | None:
    """``Request.host_header`` by way of ``header``."""
    if req.is_http2 or req.is_http3:
        return req.authority or header(req.headers, b"host")
    return header(req.headers, b"host")


class Scope:
    """Which pack, if any, a request belongs to. Immutable; replaced when packs or the host map change.

    The answer depends only on the Host header (or HTTP/2 authority) and the connection's
    destination, so it is memoized on that pair: every hook of every flow asks, and a request to a
    known host costs one dict look-up.
    """

    MEMO_SIZE = 4096

    def __init__(self, packs: tuple[Pack, ...] = (), host_map: dict[str, str] | None = None):
        self.packs = packs
        self.host_map = dict(host_map or {})
        self.by_id = {p.id: p for p in packs}
        self._memo: dict[tuple[str | None, str], Pack | None] = {}

    def pack_for(self, flow: http.HTTPFlow) -> Pack | None:
        req = flow.request
        key = (host_header(req), req.host)
        try:
            return self._memo[key]
        except KeyError:
            pass
        pack = find_pack(self.packs, self.host_map, flow)
        if len(self._memo) >= self.MEMO_SIZE:
            self._memo.clear()
        self._memo[key] = pack
        return pack


def refuse(flow: http.HTTPFlow, code: str, status: int, message: str, pack: str | None, route: str | None) -> None:
    """Answer locally; the request never leaves. The body names codes and rules, never values."""
    body = {"error": {"code": code, "message": message, "flow": flow.id}}
    if pack:
        body["error"]["pack"] = pack
    if route:
        body["error"]["route"] = route
    flow.response = http.Response.make(
        status,
        json.dumps(body).encode(),
        {"content-type": "application/json", "cache-control": "no-store", "x-cloakgate-error": code},
    )
    flow.metadata[M_REFUSED] = code
    flow.marked = MARK_REFUSED
    where = f" {pack}/{route}" if pack else ""
    flow.comment = f"cloakgate refused{where}: {code}"


def add_comment(flow: http.HTTPFlow, text: str) -> None:
    flow.comment = f"{flow.comment}; {text}" if flow.comment else text
