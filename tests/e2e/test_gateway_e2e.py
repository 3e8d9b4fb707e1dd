"""End to end: a client, the gateway in mitmdump, a recording upstream.

The upstream's recording must hold none of the canaries in any encoding, while the client reads
every value back in plaintext, and searches for protected values find their records.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from pathlib import Path

import pytest

from tests.e2e.harness import Mitmdump, copy_rules, self_signed_tls
from tests.e2e.upstream import Upstream

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent
GRAPH = "graph.microsoft.com"
OWA = "outlook.office.com"

CANARIES = [
    "Zaphodius", "Beeblebroxian", "Trillianova", "Magratheaplanet", "Slartibartfast", "Fjordsbuilder",
    "Marvintheparanoid", "Heartofgoldship", "zaphod.canary@heartofgold.example", "5558675309", "2079460958",
    "Vogonpoetry", "Deepthought", "Arthurdentia", "Eddiecomputer",
]


def forms(c: str) -> set[bytes]:
    b = c.encode()
    out = {b, b.lower(), b.upper(), urllib.parse.quote(c).encode(), urllib.parse.quote_plus(c).encode(),
           json.dumps(c).encode()[1:-1]}
    for k in range(3):  # base64 at each alignment: the part that does not depend on neighbours
        enc = base64.b64encode(b"\x00" * k + b)
        inner = enc[(4 * k + 2) // 3 + 1 : -4]
        if len(inner) >= 6:
            out.add(inner)
    return out


def assert_no_canary(recorded: bytes) -> None:
    leaks = [(c, f) for c in CANARIES for f in forms(c) if f in recorded]
    assert not leaks, f"plaintext reached the upstream: {leaks[:5]}"


def call(conn, method: str, path: str, host: str, body: object | None = None, headers: dict | None = None):
    data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
    h = {"Host": host, "Accept-Encoding": "gzip"}
    if data is not None and "content-type" not in {k.lower() for k in (headers or {})}:
        h["Content-Type"] = "application/json"
    h.update(headers or {})
    conn.request(method, path, body=data, headers=h)
    resp = conn.getresponse()
    raw = resp.read()
    if resp.getheader("content-encoding") == "gzip":
        import gzip

        raw = gzip.decompress(raw)
    return resp.status, raw.decode("utf-8"), resp


MESSAGE = {
    "subject": "Lunch with Zaphodius Beeblebroxian",
    "body": {"contentType": "HTML", "content": "<p>Dear Trillianova,</p><p>meet at Magratheaplanet &amp; bring Vogonpoetry</p>"},
    "toRecipients": [{"emailAddress": {"name": "Slartibartfast Fjordsbuilder", "address": "slarti@example.com"}}],
}
SENDMAIL = {  # msgraph-sdk casing: PascalCase outside, camelCase inside
    "Message": {"Subject": "Secret Marvintheparanoid plan", "Body": {"ContentType": "Text", "Content": "Deepthought says 42"},
                "ToRecipients": [{"EmailAddress": {"Name": "Arthurdentia", "Address": "arthur@example.com"}}]},
    "SaveToSentItems": True,
}
CONTACT = {
    "givenName": "Zaphodius", "surname": "Beeblebroxian",
    "emailAddresses": [{"address": "zaphod.canary@heartofgold.example", "name": "Zaphodius B"}],
    "mobilePhone": "+1 555 867 5309", "businessPhones": ["+44 20 7946 0958"],
    "personalNotes": "Trillianova knows about Heartofgoldship",
}
OWA_CREATE = {
    "__type": "CreateItemJsonRequest:#Exchange",
    "Header": {"__type": "JsonRequestHeaders:#Exchange", "RequestServerVersion": "V2018_01_08"},
    "Body": {"__type": "CreateItemRequest:#Exchange", "MessageDisposition": "SaveOnly",
             "Items": [{"__type": "Message:#Exchange", "Subject": "Eddiecomputer report",
                        "Body": {"__type": "BodyContentType:#Exchange", "BodyType": "HTML", "Value": "<div>Deepthought</div>"},
                        "ToRecipients": [{"__type": "EmailAddress:#Exchange", "Name": "Arthurdentia",
                                          "EmailAddress": "arthur@example.com", "RoutingType": "SMTP"}]}]},
}


def graph_session(conn, prefix: str = "/v1.0") -> None:
    """The Graph conversation every mode runs; asserts what the client sees."""
    st, text, _ = call(conn, "POST", f"{prefix}/me/messages", GRAPH, MESSAGE)
    assert st == 201, text
    created = json.loads(text)
    assert created["subject"] == MESSAGE["subject"]
    assert created["body"]["content"] == MESSAGE["body"]["content"]
    assert created["toRecipients"] == MESSAGE["toRecipients"]

    st, text, _ = call(conn, "POST", f"{prefix}/me/sendMail", GRAPH, SENDMAIL)
    assert st == 202, text

    st, text, resp = call(conn, "GET", f"{prefix}/me/messages", GRAPH)
    assert st == 200
    listed = json.loads(text)["value"]
    assert [m.get("subject") or m.get("Subject") for m in listed] == [MESSAGE["subject"], SENDMAIL["Message"]["Subject"]]
    assert listed[1]["Body"]["Content"] == "Deepthought says 42"

    # search: the KQL term and the OData literal are transformed like the stored words
    q = urllib.parse.quote('"beeblebroxian"')
    st, text, _ = call(conn, "GET", f"{prefix}/me/messages?$search={q}", GRAPH)
    assert st == 200 and [m["subject"] for m in json.loads(text)["value"]] == [MESSAGE["subject"]]
    q = urllib.parse.quote("subject eq 'Lunch with Zaphodius Beeblebroxian'")
    st, text, _ = call(conn, "GET", f"{prefix}/me/messages?$filter={q}", GRAPH)
    assert st == 200 and [m["subject"] for m in json.loads(text)["value"]] == [MESSAGE["subject"]]

    st, text, _ = call(conn, "POST", f"{prefix}/me/contacts", GRAPH, CONTACT)
    assert st == 201, text
    c = json.loads(text)
    for k, v in CONTACT.items():
        assert c[k] == v
    st, text, _ = call(conn, "GET", f"{prefix}/me/contacts", GRAPH)
    assert json.loads(text)["value"][0]["mobilePhone"] == "+1 555 867 5309"


@pytest.fixture
def upstream():
    with Upstream() as up:
        yield up


def test_reverse_proxy_graph_owa_and_batch(tmp_path, upstream):
    with Mitmdump(tmp_path, "--mode", f"reverse:http://127.0.0.1:{upstream.port}", "--set", "keep_host_header=true") as md:
        conn = md.reverse_client()
        graph_session(conn)

        # OWA with a JSON body, then with the payload in the X-OWA-UrlPostData header
        st, text, _ = call(conn, "POST", "/owa/service.svc?action=CreateItem&app=Mail", OWA, OWA_CREATE,
                           {"Action": "CreateItem"})
        assert st == 200, text
        item = json.loads(text)["Body"]["ResponseMessages"]["Items"][0]["Items"][0]
        assert item["Subject"] == "Eddiecomputer report" and item["ToRecipients"][0]["Name"] == "Arthurdentia"
        hdr = urllib.parse.quote(json.dumps(OWA_CREATE))
        st, text, _ = call(conn, "POST", "/owa/service.svc?action=CreateItem", OWA, b"",
                           {"X-OWA-UrlPostData": hdr, "Content-Type": "application/json"})
        assert st == 200, text
        assert json.loads(text)["Body"]["ResponseMessages"]["Items"][0]["Items"][0]["Body"]["Value"] == "<div>Deepthought</div>"

        # $batch: one sub-request body as a JSON object, one base64-encoded
        b64 = base64.b64encode(json.dumps({"subject": "Heartofgoldship docs"}).encode()).decode()
        batch = {"requests": [
            {"id": "1", "method": "POST", "url": "/me/messages", "body": {"subject": "Vogonpoetry night"},
             "headers": {"Content-Type": "application/json"}},
            {"id": "2", "method": "POST", "url": "/me/messages", "body": b64,
             "headers": {"Content-Type": "text/plain"}},
        ]}
        st, text, _ = call(conn, "POST", "/v1.0/$batch", GRAPH, batch)
        assert st == 200, text
        subjects = [r["body"]["subject"] for r in json.loads(text)["responses"]]
        assert subjects == ["Vogonpoetry night", "Heartofgoldship docs"]

    recorded = upstream.store.all_bytes()
    assert_no_canary(recorded)
    assert b"slarti@example.com" in recorded and b"arthur@example.com" in recorded  # delivery addresses stay clear
    audit = [json.loads(line) for line in md.audit.read_text().splitlines()]
    assert {e["action"] for e in audit} >= {"protect", "reveal"}
    assert_no_canary(md.audit.read_bytes())
    assert_no_canary(md.log.read_bytes())


def test_stream_large_bodies_stops_the_gateway_from_starting(tmp_path, upstream):
    """mitmproxy would stream a large in-scope body out of its buffer, past the gateway (it re-checks
    the size while the body arrives): with the option set, mitmdump does not start."""
    md = Mitmdump(tmp_path, "--mode", f"reverse:http://127.0.0.1:{upstream.port}", "--set", "keep_host_header=true",
                  "--set", "stream_large_bodies=64")
    try:
        md.start()  # it may be up for a moment before it exits
    except RuntimeError:
        pass
    try:
        assert md.proc.wait(20) == 1
    finally:
        md.stop()
    assert "stream_large_bodies would stream request bodies past the gateway" in md.output()
    assert upstream.store.raw == []


def test_forward_proxy_https_with_mitmproxy_ca(tmp_path):
    with Upstream(self_signed_tls(tmp_path)) as up:
        with Mitmdump(tmp_path, "--mode", "regular", "--set", "ssl_insecure=true") as md:
            conn = md.forward_tls_client(up.port)
            graph_session(conn)
        assert_no_canary(up.store.all_bytes())
        assert up.store.requests_to("/v1.0/me/messages") >= 4


def test_multipart_form_and_nested_json(tmp_path, upstream):
    rules = copy_rules(tmp_path / "rules", HERE / "packs" / "testsaas.yaml")
    with Mitmdump(tmp_path, "--mode", f"reverse:http://127.0.0.1:{upstream.port}", "--set", "keep_host_header=true",
                  rules=rules) as md:
        conn = md.reverse_client()
        boundary = "----cgBoundary7MA4YWxk"
        body = (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nTrillianova line one\r\nline two\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n\x00\x01binary\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nSlartibartfast\r\n"
            f"--{boundary}--\r\n"
        ).encode("latin-1")
        st, text, _ = call(conn, "POST", "/upload", "api.testsaas.example", body,
                           {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert st == 200 and json.loads(text)["received"].encode("latin-1") == body  # the echo comes back revealed

        message = json.dumps({"actions": [{"id": "1;a", "descriptor": "aura://RecordUiController/ACTION$createRecord",
                                           "params": {"recordInput": {"apiName": "Contact", "fields": {
                                               "LastName": "Beeblebroxian", "Email": "zaphod.canary@heartofgold.example"}}}}]})
        form = urllib.parse.urlencode({"message": message, "aura.token": "eyJtoken"}).encode()
        st, text, _ = call(conn, "POST", "/aura?r=1", "api.testsaas.example", form,
                           {"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"})
        assert st == 200 and text.startswith("while(1);")
        fields = json.loads(text[len("while(1);"):])["actions"][0]["returnValue"]["fields"]
        assert fields == {"LastName": {"value": "Beeblebroxian"}, "Email": {"value": "zaphod.canary@heartofgold.example"}}
    recorded = upstream.store.all_bytes()
    assert_no_canary(recorded)
    assert f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"".encode() in recorded
    assert b"\x00\x01binary" in recorded
