"""The adapters, hook by hook, with mitmproxy's own test helpers."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Optional

import pytest
from mitmproxy import http
from mitmproxy.test import taddons, tflow

from cloakgate.mitm import state
from cloakgate.mitm.flows import M_SEEN
from cloakgate.mitm.gateway import Gateway
from cloakgate.mitm.guard import Guard
from tests.conftest import RULES


def req(method: str, url: str, body: bytes = b"", ctype: str = "application/json", **headers) -> http.HTTPFlow:
    h = {"content-type": ctype, **headers} if body else dict(headers)
    return tflow.tflow(req=http.Request.make(method, url, body, h))


@pytest.fixture
def gw(tmp_path: Path):
    g = Gateway()
    with taddons.context(g) as tctx:
        tctx.configure(
            g,
            cloakgate_rules=str(RULES),
            cloakgate_dev_keyring=str(tmp_path / "k.json"),
            cloakgate_audit=str(tmp_path / "audit.jsonl"),
            cloakgate_rules_poll="0",
        )
        yield g
        g.done()


def test_protect_then_reveal_and_annotations(gw: Gateway, tmp_path: Path):
    f = req("POST", "https://graph.microsoft.com/v1.0/me/messages",
            json.dumps({"subject": "Zaphodius Beeblebroxian", "importance": "high"}).encode())
    gw.requestheaders(f)
    gw.request(f)
    assert f.response is None
    sent = f.request.content
    assert b"Zaphodius" not in sent and b'"importance": "high"' in sent
    assert f.request.headers["content-length"] == str(len(sent))
    assert f.marked == ":lock:" and "protected 1 field(s) (words)" in f.comment
    assert "Zaphodius" not in f.comment and "Zaphodius" not in repr(f.metadata)
    f.response = http.Response.make(201, sent, {"content-type": "application/json"})
    gw.response(f)
    assert json.loads(f.response.content)["subject"] == "Zaphodius Beeblebroxian"
    assert "revealed 2 token(s) (words)" in f.comment
    gw.done()  # shut-down writes buffered audit events
    audit = (tmp_path / "audit.jsonl").read_text()
    assert "Zaphodius" not in audit and '"action":"protect"' in audit and '"action":"reveal"' in audit


def test_out_of_scope_hosts_are_untouched(gw: Gateway):
    f = req("POST", "https://example.net/v1.0/me/messages", b'{"subject":"Zaphodius"}')
    gw.request(f)
    assert f.request.content == b'{"subject":"Zaphodius"}' and not f.comment and f.metadata[M_SEEN]


def test_refusal_is_local_and_marked(gw: Gateway):
    f = req("POST", "https://graph.microsoft.com/v1.0/me/messages", b'{"subject": "Zaphodius')
    gw.request(f)
    assert f.response.status_code == 400
    assert f.response.headers["x-cloakgate-error"] == "cloakgate.body.malformed_json"
    assert f.marked == ":no_entry:" and "cloakgate.body.malformed_json" in f.comment
    assert b"Zaphodius" not in f.response.content
    # local responses run the response hooks too: the refusal is left alone
    gw.response(f)
    assert f.response.status_code == 400


def test_headers_after_the_first_are_seen(gw: Gateway):
    # regression: the adapter passed a generator of headers, the core read it twice, and the second
    # look-up (Content-Encoding) found nothing: an unknown encoding was forwarded.
    f = req("POST", "https://graph.microsoft.com/v1.0/me/messages", b'{"subject":"Zaphodius"}')
    f.request.headers["content-encoding"] = "snappy"
    gw.request(f)
    assert f.response is not None and f.response.headers["x-cloakgate-error"] == "cloakgate.body.unknown_encoding"


def test_internal_errors_refuse(gw: Gateway, monkeypatch):
    import cloakgate.mitm.gateway as g

    def boom(*a, **k):
        raise KeyError("Zaphodius")

    monkeypatch.setattr(g.core_protect, "protect_request", boom)
    f = req("POST", "https://graph.microsoft.com/v1.0/me/messages", b'{"subject":"Zaphodius"}')
    gw.request(f)
    assert f.response.status_code == 500 and f.response.headers["x-cloakgate-error"] == "cloakgate.internal"
    assert b"Zaphodius" not in f.response.content


def test_streamed_bodies_are_refused(gw: Gateway):
    f = req("POST", "https://graph.microsoft.com/v1.0/me/messages", b'{"subject":"x"}')
    f.request.data.content = None
    gw.request(f)
    assert f.response.headers["x-cloakgate-error"] == "cloakgate.body.streamed"


def test_requestheaders_turns_streaming_off_in_scope(gw: Gateway):
    f = req("POST", "https://graph.microsoft.com/v1.0/me/messages", b"{}")
    f.request.stream = True
    gw.requestheaders(f)
    assert f.request.stream is False


@pytest.mark.parametrize("hook", ["gateway", "guard"])
def test_streaming_is_turned_off_in_scope_only(gw: Gateway, hook: str):
    """Each of the two turns streaming off for an in-scope request on its own (the guard with the
    gateway unloaded), with or without a Content-Length; a request elsewhere keeps its streaming."""
    run = gw.requestheaders if hook == "gateway" else Guard().requestheaders
    chunked = req("POST", "https://graph.microsoft.com/v1.0/me/messages", b"{}")
    del chunked.request.headers["content-length"]
    chunked.request.headers["transfer-encoding"] = "chunked"
    get = req("GET", "https://graph.microsoft.com/v1.0/me/messages?$top=10")
    other = req("POST", "https://example.net/upload", b"x" * 10)
    for f in (chunked, get, other):
        f.request.stream = True
        run(f)
    assert chunked.request.stream is False and get.request.stream is False
    assert other.request.stream is True


def test_guard_refuses_what_the_gateway_did_not_see(gw: Gateway):
    guard = Guard()
    f = req("POST", "https://graph.microsoft.com/v1.0/me/sendMail", b'{"message":{"subject":"Zaphodius"}}')
    guard.requestheaders(f)
    guard.request(f)  # the gateway never ran on this flow (unloaded)
    assert f.response.status_code == 503
    assert f.response.headers["x-cloakgate-error"] == "cloakgate.gateway.unavailable"
    ok = req("POST", "https://graph.microsoft.com/v1.0/me/sendMail", b'{"message":{"subject":"Zaphodius"}}')
    guard.requestheaders(ok)
    gw.request(ok)
    guard.request(ok)
    assert ok.response is None
    other = req("GET", "https://example.net/")
    guard.request(other)
    assert other.response is None
    assert state.SHARED.scope.packs  # the guard's view outlives the gateway object


def test_the_guard_stands_in_the_chain_exactly_while_no_ready_gateway_does(tmp_path: Path):
    """Out while a ready gateway runs (each chain entry costs every event of every flow), in when the
    gateway leaves (unload, reload, shut-down), and in beside a gateway whose configuration failed."""
    asyncio.run(_guard_in_and_out(tmp_path))


async def _guard_in_and_out(tmp_path: Path) -> None:  # running() starts the gateway's tasks
    from mitmproxy.exceptions import OptionsError

    rules = tmp_path / "rules"
    rules.mkdir()
    pack = (RULES / "m365.yaml").read_text()
    (rules / "m365.yaml").write_text(pack)
    opts = dict(cloakgate_rules=str(rules), cloakgate_dev_keyring=str(tmp_path / "k.json"), cloakgate_audit="",
                cloakgate_rules_poll="0", cloakgate_keys_refresh="0")
    g = Gateway()
    with taddons.context(g) as tctx:
        chain = tctx.master.addons
        chain.add(Guard())  # left by an earlier gateway
        tctx.configure(g, **opts)
        g.running()
        assert chain.get(Guard.name) is None
        replay = req("POST", "https://graph.microsoft.com/v1.0/me/sendMail", b'{"message":{"subject":"Zaphodius"}}')
        replay.metadata[M_SEEN] = True  # from the flow's first pass
        g.requestheaders(replay)
        g.done()  # the script unloaded between the replay's hooks: the guard takes over
        assert chain.get(Guard.name) is not None
        chain.get(Guard.name).request(replay)
        assert replay.response.headers["x-cloakgate-error"] == "cloakgate.gateway.unavailable"
        again = Gateway()  # the reloaded script, configured while a pack is broken
        (rules / "m365.yaml").write_text("saas: [broken")
        with pytest.raises(OptionsError):  # a script (re)load configures with every option
            again.configure(set(tctx.options.keys()))
        again.running()
        assert not again.ready and chain.get(Guard.name) is not None
        f = req("POST", "https://graph.microsoft.com/v1.0/me/sendMail", b'{"message":{"subject":"Zaphodius"}}')
        again.requestheaders(f)
        again.request(f)
        chain.get(Guard.name).request(f)
        assert f.response.headers["x-cloakgate-error"] == "cloakgate.gateway.unavailable"
        (rules / "m365.yaml").write_text(pack)
        again.configure(set(tctx.options.keys()))  # fixed: ready, the guard leaves
        assert again.ready and chain.get(Guard.name) is None
        again.done()
        g.done()


def test_stream_large_bodies_is_refused_and_the_guard_kills_what_it_would_stream(gw: Gateway, tmp_path: Path):
    """mitmproxy re-checks stream_large_bodies while a body arrives and streams it out of its buffer
    without another requestheaders call, so no hook can keep an in-scope body whole: the gateway
    refuses the option (mitmproxy rolls it back), and a guard that finds it set kills in-scope
    requests before their bodies. A response some other addon streamed keeps its tokens; the audit
    says so. There is no responseheaders hook (a hook costs every flow its call)."""
    from mitmproxy import ctx
    from mitmproxy.exceptions import OptionsError
    from mitmproxy.flow import Error

    assert not hasattr(gw, "responseheaders")
    opts = ctx.options
    opts.add_option("stream_large_bodies", Optional[str], None, "")  # the proxy server addon's option
    with pytest.raises(OptionsError, match="stream_large_bodies"):
        opts.update(stream_large_bodies="1m")
    assert opts.stream_large_bodies is None  # rolled back
    opts._options["stream_large_bodies"].set("1m")  # as if set while no gateway was loaded
    f = req("POST", "https://graph.microsoft.com/v1.0/me/sendMail", b'{"message":{"subject":"Zaphodius"}}')
    Guard().requestheaders(f)
    assert f.error is not None and f.error.msg == Error.KILLED_MESSAGE
    other = req("POST", "https://example.net/", b"{}")
    Guard().requestheaders(other)
    assert other.error is None
    opts._options["stream_large_bodies"].set(None)

    f = req("POST", "https://graph.microsoft.com/v1.0/me/messages", b'{"subject":"Zaphodius"}')
    gw.request(f)
    f.response = http.Response.make(201, b"", {"content-type": "application/json"})
    f.response.raw_content = None  # streamed by another addon
    gw.response(f)
    assert "body unreadable: cloakgate.body.streamed" in f.comment
    gw.done()
    assert '"outcome":"cloakgate.body.streamed"' in (tmp_path / "audit.jsonl").read_text()


def test_websocket_messages_are_revealed(gw: Gateway):
    f = req("POST", "https://graph.microsoft.com/v1.0/me/messages", b'{"subject":"Zaphodius"}')
    gw.request(f)
    token = json.loads(f.request.content)["subject"]
    ws = tflow.twebsocketflow()
    ws.request.host = "outlook.office.com"
    ws.request.headers["host"] = "outlook.office.com"
    ws.websocket.messages[-1].type = 1  # TEXT
    ws.websocket.messages[-1].from_client = False
    ws.websocket.messages[-1].content = json.dumps({"notification": {"Subject": token}}).encode()
    gw.websocket_message(ws)
    assert json.loads(ws.websocket.messages[-1].content)["notification"]["Subject"] == "Zaphodius"


def test_hot_reload_keeps_last_good_pack(tmp_path: Path):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "m365.yaml").write_text((RULES / "m365.yaml").read_text())
    g = Gateway()
    with taddons.context(g) as tctx:
        tctx.configure(g, cloakgate_rules=str(rules), cloakgate_dev_keyring=str(tmp_path / "k.json"),
                       cloakgate_audit="", cloakgate_rules_poll="0")
        (rules / "m365.yaml").write_text("saas: [broken")
        msgs = g.reload_rules()
        assert any("last good version stays in force" in m for m in msgs)
        assert [p.id for p in g.packs] == ["m365"]
        (rules / "extra.yaml").write_text("saas: X\nhosts: [x.example]\nroutes: []\n")
        g.reload_rules()
        assert sorted(p.id for p in g.packs) == ["extra", "m365"]
        (rules / "extra.yaml").unlink()
        g.reload_rules()
        assert [p.id for p in g.packs] == ["m365"]
        g.done()


def test_startup_with_a_broken_pack_is_an_options_error(tmp_path: Path):
    from mitmproxy.exceptions import OptionsError

    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "bad.yaml").write_text("saas: X\nhosts: [x]\nroutes: [{name: a}]\n")
    g = Gateway()
    with taddons.context(g) as tctx:
        with pytest.raises(OptionsError) as e:
            tctx.configure(g, cloakgate_rules=str(rules), cloakgate_dev_keyring=str(tmp_path / "k.json"))
        assert "bad.yaml:3" in str(e.value)
        g.done()


def test_rules_check_command(gw: Gateway):
    assert "ok " in gw.rules_check() and "m365" in gw.rules_check()
    assert "DEVELOPMENT" in gw.status()


def test_dev_keyring_file_is_private(gw: Gateway, tmp_path: Path):
    assert (tmp_path / "k.json").stat().st_mode & 0o777 == 0o600


def test_repeated_content_encoding_headers_are_all_undone(gw: Gateway):
    """Two Content-Encoding headers stack like one folded header: gzip first, then brotli."""
    import gzip

    import brotli

    f = req("POST", "https://graph.microsoft.com/v1.0/me/messages", json.dumps({"subject": "Marvin Android"}).encode())
    gw.requestheaders(f)
    gw.request(f)
    sent = f.request.content
    body = brotli.compress(gzip.compress(sent))
    f.response = http.Response.make(201)
    f.response.headers = http.Headers([(b"content-type", b"application/json"),
                                       (b"content-encoding", b"gzip"), (b"content-encoding", b"br")])
    f.response.raw_content = body
    gw.response(f)
    assert "content-encoding" not in f.response.headers
    assert json.loads(f.response.raw_content)["subject"] == "Marvin Android"
    assert f.response.headers["content-length"] == str(len(f.response.raw_content))


def test_response_uses_the_pack_and_route_of_its_request(gw: Gateway):
    f = req("GET", "https://graph.microsoft.com/v1.0/me/messages?$top=1")
    gw.requestheaders(f)
    gw.request(f)
    tok = f.request.path  # no protected query field: the request went through unchanged
    assert tok == "/v1.0/me/messages?$top=1"
    protect = req("POST", "https://graph.microsoft.com/v1.0/me/messages", b'{"subject":"Trillian"}')
    gw.request(protect)
    token = json.loads(protect.request.content)["subject"]
    f.request.host = "example.net"  # changed after protection (another addon): the response still belongs to m365
    f.response = http.Response.make(200, json.dumps({"value": [{"subject": token}]}).encode(),
                                    {"content-type": "application/json"})
    gw.response(f)
    assert json.loads(f.response.content)["value"][0]["subject"] == "Trillian"
    stray = tflow.tflow(resp=http.Response.make(200, json.dumps({"s": token}).encode(), {"content-type": "application/json"}))
    gw.response(stray)  # a flow the request hook never saw in scope: left alone
    assert token in stray.response.text


def _read(gw: Gateway, url: str) -> http.HTTPFlow:
    f = req("GET", url)
    gw.requestheaders(f)
    gw.request(f)
    return f


def test_repeated_reads_are_decided_once_and_searches_always_protected(gw: Gateway, monkeypatch):
    """A read that goes out unchanged is remembered by pack, method and path: the same read again costs
    no rule work and gets the same route. A read with a protected query parameter is never remembered."""
    import cloakgate.mitm.gateway as g

    calls = []
    real = g.core_protect.protect_request
    monkeypatch.setattr(g.core_protect, "protect_request", lambda *a: calls.append(a[2]) or real(*a))
    plain = "https://graph.microsoft.com/v1.0/me/messages?$top=10"
    first, again = _read(gw, plain), _read(gw, plain)
    assert calls == ["/v1.0/me/messages?$top=10"]
    for f in (first, again):
        assert f.response is None and f.request.path == "/v1.0/me/messages?$top=10" and not f.comment
        assert f.metadata["cloakgate.route"] == "graph.messages.read"
        assert f.metadata["cloakgate.pack"] == "m365"
    search = "https://graph.microsoft.com/v1.0/me/messages?$search=Zaphodius"
    for _ in range(2):
        f = _read(gw, search)
        assert f.response is None and "Zaphodius" not in f.request.path and "protected 1 field" in f.comment
    assert len(calls) == 3
    elsewhere = "https://graph.microsoft.com/v1.0/me/drive/root/children"  # no route (the pack passes it)
    assert [_read(gw, elsewhere).metadata.get("cloakgate.route") for _ in range(2)] == [None, None]
    assert len(calls) == 4


def test_a_remembered_read_fails_closed_once_its_key_is_gone(gw: Gateway):
    """The memory of reads belongs to one key ring: a read route that selects fields needs the pack's key
    even when nothing in the request is selected, and without it the read is refused, seen before or not."""
    from cloakgate.core.keyring import EmptyKeyRing

    url = "https://graph.microsoft.com/v1.0/me/messages?$top=10"
    assert _read(gw, url).response is None and _read(gw, url).response is None
    gw._set_ring(EmptyKeyRing())
    f = _read(gw, url)
    assert f.response is not None and f.response.headers["x-cloakgate-error"] == "cloakgate.key.unavailable"


def test_a_remembered_read_follows_new_rules(tmp_path: Path):
    """The memory of reads belongs to one set of rules: a reload that selects a query parameter of a read
    seen before protects it from then on."""
    rules = tmp_path / "rules"
    rules.mkdir()
    pack = "saas: X\nhosts: [x.example]\nroutes:\n  - name: find\n    methods: [GET]\n    path_regex: /find\n"
    (rules / "x.yaml").write_text(pack + "    fields: []\n")
    g = Gateway()
    with taddons.context(g) as tctx:
        tctx.configure(g, cloakgate_rules=str(rules), cloakgate_dev_keyring=str(tmp_path / "k.json"),
                       cloakgate_audit="", cloakgate_rules_poll="0")
        url = "https://x.example/find?q=Zaphodius"
        assert [_read(g, url).request.path for _ in range(2)] == ["/find?q=Zaphodius"] * 2
        (rules / "x.yaml").write_text(pack + "    fields:\n      - {query: q, scheme: deterministic}\n")
        g.reload_rules()
        f = _read(g, url)
        assert f.response is None and f.request.path.startswith("/find?q=")
        assert "Zaphodius" not in f.request.path
        # a route that selects a header: a read without it does not answer for the next one with it
        header_rule = "{header: X-Who, scheme: deterministic, on_missing: skip}"
        (rules / "x.yaml").write_text(pack + f"    fields:\n      - {header_rule}\n")
        g.reload_rules()
        assert _read(g, "https://x.example/find").response is None
        f = req("GET", "https://x.example/find", **{"X-Who": "Zaphodius"})
        g.requestheaders(f)
        g.request(f)
        assert f.response is None and "Zaphodius" not in f.request.headers["x-who"]
        g.done()


def _protected(gw: Gateway, url: str, doc: dict) -> dict:
    f = req("POST", url, json.dumps(doc).encode())
    gw.requestheaders(f)
    gw.request(f)
    assert f.response is None
    return json.loads(f.request.content)


def _bodies(gw: Gateway) -> dict[str, tuple[str, bytes, dict[str, str]]]:
    """Response bodies holding tokens as the gateway wrote them: kind -> (read url, body, headers)."""
    import gzip

    messages = "https://graph.microsoft.com/v1.0/me/messages"
    msg = _protected(gw, messages, {"subject": "Zaphodius Beeblebroxian", "body": {
        "contentType": "html", "content": "<p>Arthur Dentworth of <b>Cottington</b></p>"}})
    contact = _protected(gw, "https://graph.microsoft.com/v1.0/me/contacts", {
        "givenName": "Trillianne", "imAddresses": ["trillian@heart.example"], "personalNotes": "Marvin knows",
        "businessPhones": ["+1 555 0100"]})
    subject, html = msg["subject"], msg["body"]["content"]
    # another letter, not the same one in the other case: a word token carries its word's case in the case
    # of its letters, and tokens are read case-insensitively, so a case change is no tamper (it flaked so)
    tampered = subject[:20] + ("A" if subject[20].upper() != "A" else "B") + subject[21:]
    as_json = {"content-type": "application/json"}
    words = json.dumps({"value": [{"subject": subject, "body": {"content": html}}]}).encode()
    return {
        "words": (messages, words, as_json),
        "deterministic": (messages, json.dumps({"im": contact["imAddresses"]}).encode(), as_json),
        "aead": (messages, json.dumps({"notes": contact["personalNotes"]}).encode(), as_json),
        "truncated": (messages, json.dumps({"bodyPreview": subject[:-7]}).encode(), as_json),
        "tampered": (messages, json.dumps({"subject": tampered}).encode(), as_json),
        "plain": (messages, b'{"value": [{"subject": "no tokens here"}]}', as_json),
        "html": (messages, html.encode(), {"content-type": "text/html; charset=utf-8"}),
        "gzip": (messages, gzip.compress(words), {**as_json, "content-encoding": "gzip"}),
        "reveal rules": ("https://graph.microsoft.com/v1.0/me/contacts", json.dumps(
            {"givenName": contact["givenName"], "businessPhones": contact["businessPhones"]}
        ).encode(), as_json),
    }


KINDS = ["words", "deterministic", "aead", "truncated", "tampered", "plain", "html", "gzip", "reveal rules"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_body_seen_before_is_revealed_as_the_first_time(gw: Gateway, tmp_path: Path, monkeypatch, kind):
    """The second time a body arrives every segment in it is known and one call in C reveals it: the client
    gets the same bytes and headers, the flow the same comment and mark, the audit log the same event. A
    content encoding or a route with reveal rules always takes the whole path."""
    import cloakgate.mitm.gateway as g

    url, body, headers = _bodies(gw)[kind]
    flows = []
    whole_path = []
    real = g.core_reveal.reveal_body

    def counted(*a, **k):  # noqa: ANN002, ANN003
        whole_path.append(1)
        return real(*a, **k)

    for _ in range(2):
        f = _read(gw, url)
        f.response = http.Response.make(200, b"", headers)
        f.response.raw_content = body  # as the upstream sent it (make() would encode it again)
        f.response.headers["content-length"] = str(len(body))
        gw.response(f)
        flows.append(f)
        monkeypatch.setattr(g.core_reveal, "reveal_body", counted)
    first, second = flows
    assert second.response.content == first.response.content
    assert second.response.headers.fields == first.response.headers.fields
    assert (second.comment, second.marked) == (first.comment, first.marked)
    gw.done()
    events = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    reveals = [{k: v for k, v in e.items() if k not in ("time", "flow")}
               for e in events if e["action"] == "reveal"]
    assert len(reveals) == (2 if first.comment else 0) and reveals[:1] == reveals[1:]
    assert whole_path == ([1] if kind in ("aead", "gzip", "reveal rules") else [])
    plaintext = {"words": b"Zaphodius Beeblebroxian", "deterministic": b"trillian@heart.example",
                 "aead": b"Marvin", "html": b"Arthur Dentworth", "gzip": b"Cottington",
                 "reveal rules": b"Trillianne", "truncated": b"Zaphodius",
                 "tampered": b"Beeblebroxian"}.get(kind)
    skipped = {"truncated": "1 truncated", "tampered": "1 invalid"}.get(kind)
    assert skipped is None or skipped in second.comment
    if plaintext is None:  # nothing to reveal: the body went back as it came
        assert second.response.raw_content == body
    else:
        assert plaintext in second.response.raw_content and "content-encoding" not in second.response.headers
        assert second.response.headers["content-length"] == str(len(second.response.raw_content))
    if kind == "reveal rules":
        assert json.loads(second.response.content)["businessPhones"] == ["+1 555 0100"]


def _respond(gw: Gateway, url: str, body: bytes, headers: dict[str, str]) -> http.HTTPFlow:
    f = _read(gw, url)
    f.response = http.Response.make(200, body, headers)
    gw.response(f)
    return f


def test_bodies_seen_before_each_keep_their_own_comment(gw: Gateway):
    """Comments of bodies revealed from known segments are remembered by their counts: bodies with other
    counts, met in turn, each get their own."""
    bodies = [b for k, b in _bodies(gw).items() if k not in ("gzip",)]
    first = [_respond(gw, *b).comment for b in bodies]
    assert len(set(first)) >= 5
    assert [_respond(gw, *b).comment for b in bodies] == first


def test_a_body_seen_before_is_not_revealed_once_its_key_is_gone(gw: Gateway):
    """Known segments belong to the keys that revealed them: with the key gone, the same body keeps its
    tokens (counted invalid), however often it was revealed before."""
    from cloakgate.core.keyring import EmptyKeyRing

    _, body, headers = _bodies(gw)["words"]
    url = "https://graph.microsoft.com/v1.0/me/drive/root/children"  # a read no rule selects: it needs no key
    assert b"Zaphodius" in _respond(gw, url, body, headers).response.content
    assert b"Zaphodius" in _respond(gw, url, body, headers).response.content
    gw._set_ring(EmptyKeyRing())
    f = _respond(gw, url, body, headers)
    assert f.response.content == body and "invalid" in f.comment
