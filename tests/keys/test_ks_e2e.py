"""Key service and client end to end over RA-TLS on 127.0.0.1 (simulated TEE)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pyotp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from cloakgate_keys.attestation.providers import Evidence, SimulatedProvider
from cloakgate_keys.attestation.simulated import SimulatedPlatform
from cloakgate_keys.client import (
    KeyClient,
    KeyServiceUnavailable,
    ReleaseDenied,
    ServicePolicy,
    ServiceRejected,
    VerifiedConnection,
)
from cloakgate_keys.service import ratls
from cloakgate_keys.service.app import KeyServiceApp, Request, open_backup
from cloakgate_keys.service.audit import read_entries, verify_chain
from cloakgate_keys.service.evidence import VerifierConfig
from cloakgate_keys.service.policy import parse_policy
from cloakgate_keys.service.server import KeyServer
from cloakgate_keys.service.state import ServiceState
from cloakgate_keys.service.tee import TeeConfig
from cloakgate_keys.service.wrap import b64u, raw_public

SVC = "5e" * 32  # the key service's measurement
GW = "9a" * 32  # the gateway's measurement
KEY_TTL = 300
POLICY = {"version": "1.0.0", "allOf": [
    {"claim": "tee", "equals": "simulated"},
    {"claim": "measurement", "equals": GW},
    {"claim": "debug", "equals": False},
]}


class Clock:
    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t


class World:
    """A simulated platform, an initialized state dir and the custodians' authenticators."""

    def __init__(self, root: Path):
        self.root, self.clock = root, Clock()
        self.platform_dir = root / "platform"
        self.platform = SimulatedPlatform.create(self.platform_dir)
        self.state_dir = root / "state"
        self.tee = TeeConfig("simulated", sim_platform=self.platform_dir, measurement=SVC)
        _, uris = ServiceState.initialize(self.state_dir, self.tee.sealer(), tee="simulated", custodians=3,
                                          threshold=2, packs=["crm", "hr"], policy=parse_policy(POLICY),
                                          now=self.clock())
        self.totp = {u.split("%3A")[1].split("?")[0]: pyotp.parse_uri(u) for u in uris}

    def codes(self, *ids: str, at: float | None = None) -> dict[str, str]:
        return {i: self.totp[i].at(self.clock() if at is None else at) for i in ids}

    def app(self) -> KeyServiceApp:
        state = ServiceState.open(self.state_dir, self.tee.sealer(), tee="simulated")
        verifier = VerifierConfig(allow_simulated=True, sim_platform_dir=self.platform_dir)
        return KeyServiceApp(state, verifier=verifier, info={"tee": "simulated", "SIMULATED": True},
                             clock=self.clock, key_ttl=KEY_TTL)

    def identity(self, *, measurement: str = SVC, debug: bool = False,
                 platform: SimulatedPlatform | None = None) -> ratls.RatlsIdentity:
        prov = SimulatedProvider(platform or self.platform, measurement=measurement, debug=debug,
                                 clock=self.clock)
        return ratls.build_identity(prov, now=datetime.fromtimestamp(self.clock(), UTC))

    @contextmanager
    def serve(self, identity: ratls.RatlsIdentity | None = None) -> Iterator[KeyServer]:
        server = KeyServer(self.app(), identity or self.identity(), conn_timeout=5.0)
        with server:
            yield server

    def service_policy(self, **kw) -> ServicePolicy:
        base = {"measurements": frozenset({SVC}), "allow_simulated": True,
                "sim_platform_dir": str(self.platform_dir)}
        return ServicePolicy(**{**base, **kw})

    def gateway(self, *, measurement: str = GW, debug: bool = False) -> SimulatedProvider:
        return SimulatedProvider(self.platform, measurement=measurement, debug=debug, clock=self.clock)

    def client(self, url: str, *, policy: ServicePolicy | None = None, provider=None, **kw) -> KeyClient:
        return KeyClient(url, service_policy=policy or self.service_policy(),
                         evidence_provider=provider or self.gateway(), now=self.clock, timeout=5.0, **kw)

    def admin(self, url: str, op: str, body: dict) -> tuple[int, dict]:
        now = datetime.fromtimestamp(self.clock(), UTC)
        with VerifiedConnection(url, self.service_policy(), now=now) as conn:
            return conn.request("POST", f"/admin/{op}", body)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


@pytest.fixture
def server(world: World) -> Iterator[KeyServer]:
    with world.serve() as s:
        yield s


def test_handshake_releases_keys(world, server):
    client = world.client(server.url)
    keys = client.keys_for("crm")
    assert len(keys) == 1 and keys[0].primary and keys[0].version == 1 and keys[0].pack == "crm"
    assert len(keys[0].material) == 32 and set(keys[0].kid) <= set("abcdefghijklmnopqrstuvwxyz234567")
    assert keys[0].material.hex() not in repr(keys) and "material" not in repr(keys[0])
    stored = ServiceState.open(world.state_dir, world.tee.sealer(), tee="simulated").keystore.live("crm")
    assert (stored[0].kid, stored[0].material) == (keys[0].kid, keys[0].material)
    assert client.primary("crm") is keys[0] and client.lookup(keys[0].kid) is keys[0]
    st = client.status()
    assert st["SIMULATED"] is True and st["tee"] == "simulated" and st["measurement"] == SVC
    assert st["tcb_status"] == "Simulated" and st["last_error"] is None and st["last_refresh"]
    assert st["packs"]["crm"]["primary"] == keys[0].kid
    # steady state: no call to the key service
    n = server.requests
    for _ in range(5):
        assert client.keys_for("crm") == keys
    assert server.requests == n
    # a different pack costs one more exchange
    assert client.keys_for("hr")[0].kid != keys[0].kid
    kinds = [e["op"] for e in read_entries(world.state_dir / "audit.jsonl")]
    assert kinds.count("release") == 2 and verify_chain(world.state_dir / "audit.jsonl")


def broken_binding(world: World) -> ratls.RatlsIdentity:
    """A certificate whose evidence binds another key than the certificate's."""
    key, other = ec.generate_private_key(ec.SECP384R1()), ec.generate_private_key(ec.SECP384R1())
    claims = ratls.claims_buffer(ratls.spki_der(other))
    ev = world.gateway(measurement=SVC).evidence(ratls.report_data_for(claims))
    der = ratls.build_certificate(key, ratls.extension_value(ev, claims),
                                  now=datetime.fromtimestamp(world.clock(), UTC))
    return ratls.RatlsIdentity(der, key, ev)


@pytest.mark.parametrize("case, code", [
    ("other_measurement", "identity"),
    ("debug", "debug"),
    ("broken_binding", "binding"),
    ("simulated_not_allowed", "not_allowed"),
    ("other_platform", "signature"),
])
def test_service_refused_before_any_request(world, tmp_path, case, code):
    policy = world.service_policy()
    identity = None
    if case == "other_measurement":
        identity = world.identity(measurement="77" * 32)
    elif case == "debug":
        identity = world.identity(debug=True)
    elif case == "broken_binding":
        identity = broken_binding(world)
    elif case == "simulated_not_allowed":
        policy = world.service_policy(allow_simulated=False)
    elif case == "other_platform":
        identity = world.identity(platform=SimulatedPlatform.create(tmp_path / "rogue"))
    with world.serve(identity) as server:
        client = world.client(server.url, policy=policy)
        with pytest.raises(ServiceRejected) as e:
            client.keys_for("crm")
        assert e.value.code.endswith(code)
        assert server.requests == 0  # not a byte of a request was sent
        assert client.status()["last_error"] == e.value.code
        with pytest.raises(ServiceRejected):
            VerifiedConnection(server.url, policy, now=datetime.fromtimestamp(world.clock(), UTC))
        assert server.requests == 0


class UnboundProvider:
    """Valid gateway evidence whose report data does not bind the nonce and key."""

    tee = "simulated"

    def __init__(self, inner: SimulatedProvider):
        self.inner = inner

    def evidence(self, report_data: bytes) -> Evidence:
        return self.inner.evidence(bytes(64))


@pytest.mark.parametrize("provider, code", [
    (lambda w: w.gateway(measurement="66" * 32), "policy"),
    (lambda w: w.gateway(debug=True), "evidence"),
    (lambda w: UnboundProvider(w.gateway()), "binding"),
    (lambda w: SimulatedProvider(SimulatedPlatform.create(w.root / "rogue"), measurement=GW, clock=w.clock),
     "evidence"),
])
def test_gateway_not_satisfying_release_policy_gets_no_key(world, server, provider, code):
    client = world.client(server.url, provider=provider(world))
    with pytest.raises(ReleaseDenied) as e:
        client.keys_for("crm")
    assert e.value.code.endswith(code)
    assert client.lookup("aaa") is None and client.status()["packs"] == {}
    entries = read_entries(world.state_dir / "audit.jsonl")
    assert entries[-1]["op"] == "attest" and entries[-1]["ok"] is False
    assert not any(e["op"] == "release" for e in entries)


def test_simulated_gateway_refused_unless_service_allows(world):
    app = world.app()
    app.verifier = VerifierConfig(allow_simulated=False, sim_platform_dir=world.platform_dir)
    with KeyServer(app, world.identity()) as server:
        with pytest.raises(ReleaseDenied):
            world.client(server.url).keys_for("crm")


def test_restart_same_state_same_keys(world):
    with world.serve() as s1:
        first = {k.kid: k.material for p in ("crm", "hr") for k in world.client(s1.url).keys_for(p)}
        cert1 = s1.identity.cert_der
    with world.serve() as s2:
        second = {k.kid: k.material for p in ("crm", "hr") for k in world.client(s2.url).keys_for(p)}
        assert s2.identity.cert_der != cert1  # fresh TLS key per start
    assert first == second and len(first) == 2


def test_rotation_then_retire(world, server):
    client = world.client(server.url)
    old = client.keys_for("crm")[0]
    status, body = world.admin(server.url, "rotate", {"pack": "crm", "codes": world.codes("c1", "c2")})
    assert status == 200 and body["version"] == 2 and body["kid"] != old.kid
    client.refresh()
    keys = client.keys_for("crm")
    assert [(k.kid, k.primary) for k in keys] == [(body["kid"], True), (old.kid, False)]
    assert keys[1].material == old.material  # old tokens still decrypt
    world.clock.t += 30  # next TOTP step
    status, _ = world.admin(server.url, "retire", {"pack": "crm", "kid": old.kid,
                                                   "codes": world.codes("c2", "c3")})
    assert status == 200
    client.refresh()
    assert [k.kid for k in client.keys_for("crm")] == [body["kid"]]
    assert client.lookup(old.kid) is None
    world.clock.t += 30
    status, err = world.admin(server.url, "retire", {"pack": "crm", "kid": body["kid"],
                                                     "codes": world.codes("c1", "c3")})
    assert status == 409 and err["error"].endswith("retire_primary")


def test_admin_needs_fresh_quorum_over_http(world, server):
    ok = world.codes("c1", "c2")
    wrong = dict(ok, c3="000000" if world.totp["c3"].at(world.clock()) != "000000" else "111111")
    for codes in ({"c1": ok["c1"]}, wrong, {}):
        status, body = world.admin(server.url, "rotate", {"pack": "crm", "codes": codes})
        assert status == 401 and body == {"error": "cloakgate_keys.service.unauthorized.custodian_codes"}
    world.clock.t += 30
    ok = world.codes("c1", "c2")
    assert world.admin(server.url, "rotate", {"pack": "crm", "codes": ok})[0] == 200
    assert world.admin(server.url, "rotate", {"pack": "crm", "codes": ok})[0] == 401  # replay
    entries = [e for e in read_entries(world.state_dir / "audit.jsonl") if e["op"] == "rotate"]
    assert [e["ok"] for e in entries] == [False, False, False, True, False]
    text = (world.state_dir / "audit.jsonl").read_text()
    assert not any(code in text for code in ok.values())


def test_set_policy_over_http(world, server):
    deny = {"anyOf": [{"claim": "measurement", "equals": "00" * 32}]}
    status, body = world.admin(server.url, "policy", {"policy": deny, "codes": world.codes("c1", "c3")})
    assert status == 200 and len(body["policy_sha256"]) == 64
    with pytest.raises(ReleaseDenied):
        world.client(server.url).keys_for("crm")
    world.clock.t += 30
    bad = {"anyOf": [{"claim": "tee", "like": "sim"}]}
    status, body = world.admin(server.url, "policy", {"policy": bad, "codes": world.codes("c1", "c3")})
    assert status == 400


def test_backup_export(world, server):
    recipient = X25519PrivateKey.generate()
    status, body = world.admin(server.url, "backup", {"recipient": b64u(raw_public(recipient.public_key())),
                                                      "codes": world.codes("c1", "c2")})
    assert status == 200
    backup = open_backup(body["backup"], recipient)
    kids = {v["kid"] for v in backup["keystore"]["versions"]}
    assert kids == {k.kid for p in ("crm", "hr") for k in world.client(server.url).keys_for(p)}
    with pytest.raises(Exception):
        open_backup(body["backup"], X25519PrivateKey.generate())


def test_cache_refresh_backoff_and_fail_closed(world):
    with world.serve() as server:
        client = world.client(server.url, backoff_initial=5.0, backoff_max=20.0)
        keys = client.keys_for("crm")
        world.clock.t += KEY_TTL * 0.5
        n = server.requests
        assert client.keys_for("crm") == keys and server.requests == n  # before the refresh point
        world.clock.t += KEY_TTL * 0.3  # past 75 %: refreshes ahead of expiry
        assert client.keys_for("crm")[0].kid == keys[0].kid and server.requests == n + 3
    # service gone: cached keys serve until expiry, failures back off
    world.clock.t += KEY_TTL * 0.8
    assert client.keys_for("crm")[0].kid == keys[0].kid
    st = client.status()
    assert st["consecutive_failures"] == 1 and st["last_error"] == "cloakgate_keys.client.connect"
    assert client.keys_for("crm") and client.status()["consecutive_failures"] == 1  # backing off
    world.clock.t += 5.0
    client.keys_for("crm")
    assert client.status()["consecutive_failures"] == 2
    world.clock.t += KEY_TTL  # expired
    with pytest.raises(KeyServiceUnavailable) as e:
        client.keys_for("crm")
    assert e.value.code == "cloakgate_keys.client.connect"
    assert client.lookup(keys[0].kid) is None
    assert client.maybe_refresh() is False


def test_maybe_refresh_picks_up_rotation(world, server):
    client = world.client(server.url)
    old = client.keys_for("crm")[0]
    assert client.maybe_refresh() is False  # nothing due
    status, body = world.admin(server.url, "rotate", {"pack": "crm", "codes": world.codes("c1", "c2")})
    world.clock.t += KEY_TTL * 0.8
    assert client.maybe_refresh() is True
    n = server.requests
    keys = client.keys_for("crm")
    assert keys[0].kid == body["kid"] and keys[1].kid == old.kid and server.requests == n


def test_concurrent_callers_share_one_fetch(world, server):
    client = world.client(server.url)
    results: list[str] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        results.append(client.keys_for("crm")[0].kid)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and len(results) == 8
    assert server.requests == 3


def test_unknown_pack_and_bad_names(world, server):
    client = world.client(server.url)
    with pytest.raises(KeyServiceUnavailable) as e:
        client.keys_for("nope")
    assert e.value.code == "cloakgate_keys.service.not_found.pack"
    with pytest.raises(ValueError):
        client.keys_for("../etc")


def test_health_and_nonce_single_use(world, server):
    now = datetime.fromtimestamp(world.clock(), UTC)
    with VerifiedConnection(server.url, world.service_policy(), now=now) as conn:
        assert conn.request("GET", "/health")[1]["SIMULATED"] is True
        status, auth = conn.request("POST", "/auth", {"version": "1", "tee": "simulated"})
        assert status == 200
        key = X25519PrivateKey.generate()
        from cloakgate_keys.service.protocol import runtime_report_data
        from cloakgate_keys.service.wrap import public_jwk

        rd = {"nonce": auth["nonce"], "tee-pubkey": public_jwk(key.public_key())}
        ev = world.gateway().evidence(runtime_report_data(rd))
        body = {"runtime-data": rd, "tee-evidence": {"kind": ev.kind, "data": b64u(ev.data)}}
        assert conn.request("POST", "/attest", body)[0] == 200
        assert conn.request("POST", "/attest", body)[1]["error"].endswith("nonce")  # single use
        assert conn.request("GET", "/keys/crm", headers={"Authorization": "Bearer nope"})[0] == 401
        assert conn.request("POST", "/nowhere", {})[0] == 404
        # expired nonce
        status, auth = conn.request("POST", "/auth", {"version": "1", "tee": "simulated"})
        world.clock.t += 31
        rd = {"nonce": auth["nonce"], "tee-pubkey": public_jwk(key.public_key())}
        ev = world.gateway().evidence(runtime_report_data(rd))
        body = {"runtime-data": rd, "tee-evidence": {"kind": ev.kind, "data": b64u(ev.data)}}
        assert conn.request("POST", "/attest", body)[0] == 401


@pytest.fixture(scope="module")
def bare_app(tmp_path_factory: pytest.TempPathFactory) -> KeyServiceApp:
    return World(tmp_path_factory.mktemp("fuzz")).app()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12)
fields = st.sampled_from(["version", "tee", "runtime-data", "tee-evidence", "nonce", "tee-pubkey", "kind",
                          "data", "aux", "pack", "kid", "codes", "policy", "recipient"])


@settings(max_examples=300, deadline=None)
@given(path=st.sampled_from(["/auth", "/attest", "/keys/crm", "/admin/rotate", "/admin/retire",
                             "/admin/policy", "/admin/backup", "/health", "/x"]),
       method=st.sampled_from(["GET", "POST"]),
       body=st.one_of(st.binary(max_size=64), st.builds(lambda d: json.dumps(d).encode(),
                                                        st.dictionaries(fields, json_values, max_size=5))),
       bearer=st.text(max_size=10))
def test_app_refuses_garbage_without_crashing(bare_app, path, method, body, bearer):
    resp = bare_app.handle(Request(method, path, {"authorization": "Bearer " + bearer}, body))
    assert resp.status in (200, 400, 401, 403, 404, 409, 503)
    if resp.status == 200:
        assert path in ("/health", "/auth")
    assert b"material" not in resp.body


def test_deeply_nested_json_is_a_bad_request(bare_app):
    resp = bare_app.handle(Request("POST", "/auth", {}, b"[" * 50_000))
    assert resp.status == 400
