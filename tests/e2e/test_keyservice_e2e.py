"""The gateway in mitmdump with keys from the key service (simulated TEE) over attested TLS."""

from __future__ import annotations

import json
import time

import pytest

from tests.e2e.harness import KeyService, Mitmdump
from tests.e2e.test_gateway_e2e import GRAPH, MESSAGE, assert_no_canary, call
from tests.e2e.upstream import Upstream

pytestmark = pytest.mark.e2e


def reverse(upstream: Upstream) -> tuple[str, ...]:
    return ("--mode", f"reverse:http://127.0.0.1:{upstream.port}", "--set", "keep_host_header=true")


def kid_of(token: str) -> str:
    return token[3:6].lower()


@pytest.fixture
def upstream():
    with Upstream() as up:
        yield up


@pytest.fixture
def keyservice(tmp_path):
    ks = KeyService(tmp_path).start()
    yield ks
    ks.stop()


def wait_for(cond, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def subjects(conn) -> list[str]:
    st, text, _ = call(conn, "GET", "/v1.0/me/messages", GRAPH)
    assert st == 200, text
    return [m["subject"] for m in json.loads(text)["value"]]


def test_released_keys_protect_survive_restart_and_rotation(tmp_path, upstream, keyservice):
    with Mitmdump(tmp_path, *reverse(upstream), *keyservice.gateway_args()) as md:
        assert "KEY SERVICE (SIMULATED TEE)" in md.output() and "SIMULATED TEE, no hardware protection" in md.output()
        conn = md.reverse_client()
        st, text, _ = call(conn, "POST", "/v1.0/me/messages", GRAPH, MESSAGE)
        assert st == 201 and json.loads(text)["subject"] == MESSAGE["subject"], text
        first_kid = kid_of(upstream.store.records["/v1.0/me/messages"][0]["subject"])

        # the key service restarts from its sealed state: the same keys come back
        port = int(keyservice.url.rsplit(":", 1)[1])
        keyservice.stop()
        keyservice.start(port)
        time.sleep(keyservice.key_ttl + 1)  # the gateway's cached keys expired meanwhile and were fetched again
        assert subjects(conn) == [MESSAGE["subject"]]

        # rotation with two custodians' codes: new tokens carry the new key id, old ones still reveal
        r = keyservice.admin("rotate", "--pack", "m365")
        assert r.returncode == 0, r.stderr
        new_kid = json.loads(r.stdout)["kid"]
        assert new_kid != first_kid

        def rotated() -> bool:
            call(conn, "POST", "/v1.0/me/messages", GRAPH, {"subject": "Deepthought rotated"})
            return kid_of(upstream.store.records["/v1.0/me/messages"][-1]["subject"]) == new_kid

        wait_for(rotated)
        assert subjects(conn)[0] == MESSAGE["subject"] and subjects(conn)[-1] == "Deepthought rotated"
    assert_no_canary(upstream.store.all_bytes())
    assert_no_canary(md.log.read_bytes())


@pytest.mark.parametrize("case", ["other-measurement", "debug"])
def test_service_not_satisfying_the_gateway_policy_is_refused(tmp_path, upstream, case):
    # the gateway sends the service nothing, gets no key, and fails closed
    ks = KeyService(tmp_path).start(debug=case == "debug")
    try:
        expected = "77" * 32 if case == "other-measurement" else None
        with Mitmdump(tmp_path, *reverse(upstream), *ks.gateway_args(measurement=expected)) as md:
            st, text, resp = call(md.reverse_client(), "POST", "/v1.0/me/messages", GRAPH, MESSAGE)
            assert (st, resp.getheader("x-cloakgate-error")) == (503, "cloakgate.key.unavailable")
            reason = "service_rejected.identity" if case == "other-measurement" else "service_rejected.debug"
            assert reason in md.output(), md.output()
    finally:
        ks.stop()
    assert upstream.store.raw == []


def test_gateway_not_satisfying_release_policy_gets_no_key(tmp_path, upstream, keyservice):
    with Mitmdump(tmp_path, *reverse(upstream), *keyservice.gateway_args(gateway_measurement="66" * 32)) as md:
        st, text, resp = call(md.reverse_client(), "POST", "/v1.0/me/messages", GRAPH, MESSAGE)
        assert (st, resp.getheader("x-cloakgate-error")) == (503, "cloakgate.key.unavailable")
        assert "release_denied" in md.output() or "denied.policy" in md.output(), md.output()
    assert upstream.store.raw == []
