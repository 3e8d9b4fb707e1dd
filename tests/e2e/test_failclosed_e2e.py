"""Fail closed, end to end: in every failure the upstream receives nothing for the protected route
and the client gets the documented error code."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from tests.e2e.harness import REPO, Mitmdump, copy_rules
from tests.e2e.test_gateway_e2e import CANARIES, GRAPH, MESSAGE, assert_no_canary, call
from tests.e2e.upstream import Upstream

pytestmark = pytest.mark.e2e
HERE = Path(__file__).resolve().parent


def reverse(upstream: Upstream) -> tuple[str, ...]:
    return ("--mode", f"reverse:http://127.0.0.1:{upstream.port}", "--set", "keep_host_header=true")


def refused(conn, method, path, host, body, headers=None) -> tuple[int, str]:
    st, text, resp = call(conn, method, path, host, body, headers)
    assert resp.getheader("x-cloakgate-error"), text
    code = json.loads(text)["error"]["code"]
    assert code == resp.getheader("x-cloakgate-error")
    for c in CANARIES:
        assert c not in text
    return st, code


def wait_for(cond, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.1)


def break_pack(md: Mitmdump, rules: Path) -> None:
    """Break the M365 pack on disk and wait until the gateway's rules watcher reports it."""
    (rules / "m365.yaml").write_text((rules / "m365.yaml").read_text().replace("routes:", "routes: [\n  oops"))
    wait_for(lambda: b"FAILED" in md.log.read_bytes(), 10)


@pytest.fixture
def upstream():
    with Upstream() as up:
        yield up


def test_bad_bodies_are_refused_and_never_forwarded(tmp_path, upstream):
    rules = copy_rules(tmp_path / "rules", HERE / "packs" / "testsaas.yaml")
    with Mitmdump(tmp_path, *reverse(upstream), "--set", "cloakgate_max_body=4096", rules=rules) as md:
        conn = md.reverse_client()
        cases = [
            ("POST", "/v1.0/me/messages", GRAPH, b'{"subject": "Zaphodius', {}, 400, "cloakgate.body.malformed_json"),
            ("POST", "/v1.0/me/messages", GRAPH, b'{"subject": 42}', {}, 422, "cloakgate.field.malformed"),
            ("POST", "/v1.0/me/messages", GRAPH, b'{"subject": "Zaphodius"}', {"Content-Encoding": "snappy"},
             415, "cloakgate.body.unknown_encoding"),
            ("POST", "/v1.0/me/messages", GRAPH, b'{"subject": "Zaphodius"}', {"Content-Encoding": "gzip"},
             400, "cloakgate.body.malformed_encoding"),
            ("POST", "/v1.0/me/messages", GRAPH, json.dumps({"subject": "Zaphodius " * 1000}).encode(), {},
             413, "cloakgate.body.too_large"),
            ("POST", "/v1.0/me/messages", GRAPH, b"subject=Zaphodius", {"Content-Type": "application/x-www-form-urlencoded"},
             415, "cloakgate.body.unexpected_content_type"),
            ("POST", "/upload", "api.testsaas.example", b"--b\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nZaphodius\r\n",
             {"Content-Type": "multipart/form-data; boundary=b"}, 400, "cloakgate.body.malformed_multipart"),
            ("POST", "/contact", "api.testsaas.example", json.dumps({"name": "Zaphodius " * 10}).encode(), {},
             422, "cloakgate.field.too_long"),
            ("POST", "/contact", "api.testsaas.example", json.dumps({"name": "x", "phone": "12"}).encode(), {},
             422, "cloakgate.fpe.domain"),
        ]
        for method, path, host, body, headers, status, code in cases:
            st, got = refused(conn, method, path, host, body, headers)
            assert (st, got) == (status, code), (path, body[:40])
        audit = [json.loads(line) for line in md.audit.read_text().splitlines()]
        assert [e["outcome"] for e in audit if e["action"] == "refuse"] == [c[-1] for c in cases]
    assert upstream.store.raw == []
    assert_no_canary(md.audit.read_bytes() + md.log.read_bytes())


def test_key_unavailable(tmp_path, upstream):
    keyring = tmp_path / "keys" / "dev-keyring.json"
    keyring.parent.mkdir()
    keyring.write_text('{"root": "not base64!"}')
    os.chmod(keyring, 0o600)
    with Mitmdump(tmp_path, *reverse(upstream), keyring=keyring) as md:
        st, code = refused(md.reverse_client(), "POST", "/v1.0/me/messages", GRAPH, MESSAGE)
        assert (st, code) == (503, "cloakgate.key.unavailable")
    assert upstream.store.raw == []


def test_exception_in_core_is_a_refusal(tmp_path, upstream):
    with Mitmdump(tmp_path, *reverse(upstream), script=HERE / "fault_gateway.py") as md:
        st, code = refused(md.reverse_client(), "POST", "/v1.0/me/messages", GRAPH, MESSAGE)
        assert (st, code) == (500, "cloakgate.internal")
        # a host no pack covers still passes
        st, _, _ = call(md.reverse_client(), "GET", "/hello", "example.net")
        assert st == 200
    assert upstream.store.requests_to("/v1.0/me/messages") == 0
    assert "Zaphodius" not in md.output()


def test_pack_broken_during_traffic_keeps_last_good_version(tmp_path, upstream):
    rules = copy_rules(tmp_path / "rules")
    with Mitmdump(tmp_path, *reverse(upstream), rules=rules) as md:
        conn = md.reverse_client()
        assert call(conn, "POST", "/v1.0/me/messages", GRAPH, MESSAGE)[0] == 201
        break_pack(md, rules)
        assert "its last good version stays in force" in md.output()
        st, text, _ = call(conn, "POST", "/v1.0/me/messages", GRAPH, MESSAGE)
        assert st == 201 and json.loads(text)["subject"] == MESSAGE["subject"]
    assert_no_canary(upstream.store.all_bytes())
    assert upstream.store.requests_to("/v1.0/me/messages") == 2


def test_gateway_script_that_fails_to_reload_does_not_open_the_gate(tmp_path, upstream):
    script_dir = tmp_path / "gw"
    script_dir.mkdir()
    script = script_dir / "gateway.py"
    shutil.copy(REPO / "addons" / "gateway.py", script)
    with Mitmdump(tmp_path, *reverse(upstream), script=script) as md:
        conn = md.reverse_client()
        assert call(conn, "POST", "/v1.0/me/messages", GRAPH, MESSAGE)[0] == 201
        script.write_text("raise RuntimeError('a typo')\n")
        wait_for(lambda: b"a typo" in md.log.read_bytes(), 15)
        assert "a typo" in md.output(), md.output()
        st, code = refused(md.reverse_client(), "POST", "/v1.0/me/messages", GRAPH, MESSAGE)
        assert (st, code) == (503, "cloakgate.gateway.unavailable")
    assert upstream.store.requests_to("/v1.0/me/messages") == 1
    assert_no_canary(upstream.store.all_bytes())


def test_gateway_reloaded_while_a_pack_is_broken_does_not_open_the_gate(tmp_path, upstream):
    """A script reload runs the new gateway's configure, which refuses a broken pack: the new gateway
    then has no packs in force, and must not wave the requests of the last good packs through."""
    script_dir = tmp_path / "gw"
    script_dir.mkdir()
    script = script_dir / "gateway.py"
    shutil.copy(REPO / "addons" / "gateway.py", script)
    rules = copy_rules(tmp_path / "rules")
    with Mitmdump(tmp_path, *reverse(upstream), script=script, rules=rules) as md:
        conn = md.reverse_client()
        assert call(conn, "POST", "/v1.0/me/messages", GRAPH, MESSAGE)[0] == 201
        break_pack(md, rules)
        script.write_text(script.read_text() + "\n# touched\n")
        wait_for(lambda: md.log.read_bytes().count(b"Loading script") >= 2, 15)
        time.sleep(0.5)
        st, code = refused(md.reverse_client(), "POST", "/v1.0/me/messages", GRAPH, MESSAGE)
        assert (st, code) == (503, "cloakgate.gateway.unavailable")
    assert upstream.store.requests_to("/v1.0/me/messages") == 1
    assert_no_canary(upstream.store.all_bytes())
