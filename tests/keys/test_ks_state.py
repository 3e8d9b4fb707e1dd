"""Key store and state directory: kids, rotation, retirement, sealing, restart, no plaintext on disk."""

from __future__ import annotations

import base64
import json
import os

import pytest

from cloakgate_keys.service.audit import read_entries, verify_chain
from cloakgate_keys.service.errors import Conflict, NotFound, StateError
from cloakgate_keys.service.sealing import Aead
from cloakgate_keys.service.state import ServiceState
from cloakgate_keys.service.store import KID_ALPHABET, KeyStore, is_kid
from cloakgate_keys.service.tee import TeeConfig

NOW = 1_700_000_000.0


def test_kids_are_three_base32_chars_and_unique():
    store = KeyStore()
    kids = [store.rotate(f"p{i % 7}", NOW).kid for i in range(2000)]
    assert all(len(k) == 3 and set(k) <= set(KID_ALPHABET) for k in kids)
    assert len(set(kids)) == len(kids)


def test_kid_collisions_are_retried():
    seq = iter([b"\x00\x00\x00", b"\x00\x00\x00", b"\x01\x01\x01"] + [b"m" * 32] * 4)
    store = KeyStore(random=lambda n: next(seq) if n == 3 else b"m" * n)
    a = store.rotate("crm", NOW)
    b = store.rotate("crm", NOW)
    assert (a.kid, b.kid) == ("aaa", "bbb")


def test_rotation_and_retirement():
    store = KeyStore()
    v1 = store.rotate("crm", NOW)
    v2 = store.rotate("crm", NOW)
    live = store.live("crm")
    assert [k.version for k in live] == [2, 1] and live[0] is v2
    with pytest.raises(Conflict):
        store.retire("crm", v2.kid)  # the primary cannot be retired
    store.retire("crm", v1.kid)
    assert [k.kid for k in store.live("crm")] == [v2.kid]
    with pytest.raises(NotFound):
        store.retire("crm", v1.kid)
    v3 = store.rotate("crm", NOW)
    assert v3.version == 3 and v3.kid not in (v1.kid, v2.kid)  # retired kids stay reserved
    with pytest.raises(NotFound):
        store.live("other")
    assert "material" not in repr(v3) and v3.material is not None and len(v3.material) == 32


def sim(tmp_path, measurement: str | None = None) -> TeeConfig:
    kw = {"measurement": measurement} if measurement else {}
    return TeeConfig("simulated", sim_platform=tmp_path / "platform", **kw)


def test_restart_unseals_same_keys(tmp_path):
    cfg = sim(tmp_path)
    st, uris = ServiceState.initialize(tmp_path / "state", cfg.sealer(), tee="simulated", custodians=2,
                                       threshold=1, packs=["crm", "hr"], now=NOW)
    assert len(uris) == 2
    before = {k.kid: k.material for p in ("crm", "hr") for k in st.keystore.live(p)}
    again = ServiceState.open(tmp_path / "state", sim(tmp_path).sealer(), tee="simulated")
    after = {k.kid: k.material for p in ("crm", "hr") for k in again.keystore.live(p)}
    assert before == after and len(before) == 2


def test_other_measurement_or_platform_cannot_unseal(tmp_path):
    cfg = sim(tmp_path)
    ServiceState.initialize(tmp_path / "state", cfg.sealer(), tee="simulated", custodians=1, threshold=1,
                            now=NOW)
    with pytest.raises(StateError):
        ServiceState.open(tmp_path / "state", sim(tmp_path, "ff" * 32).sealer(), tee="simulated")
    with pytest.raises(StateError):
        ServiceState.open(tmp_path / "state", Aead(os.urandom(32)), tee="simulated")
    with pytest.raises(StateError):
        ServiceState.open(tmp_path / "state", cfg.sealer(), tee="gramine")
    with pytest.raises(Conflict):
        ServiceState.initialize(tmp_path / "state", cfg.sealer(), tee="simulated", custodians=1,
                                threshold=1, now=NOW)


def test_tampered_state_refused(tmp_path):
    cfg = sim(tmp_path)
    ServiceState.initialize(tmp_path / "state", cfg.sealer(), tee="simulated", custodians=1, threshold=1,
                            packs=["crm"], now=NOW)
    path = tmp_path / "state" / "keystore.sealed"
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 1
    path.write_bytes(bytes(blob))
    with pytest.raises(StateError):
        ServiceState.open(tmp_path / "state", cfg.sealer(), tee="simulated")


def test_no_plaintext_secrets_on_disk(tmp_path):
    cfg = sim(tmp_path)
    st, uris = ServiceState.initialize(tmp_path / "state", cfg.sealer(), tee="simulated", custodians=3,
                                       threshold=2, packs=["crm"], now=NOW)
    secrets = [u.split("secret=")[1].split("&")[0] for u in uris]
    material = st.keystore.live("crm")[0].material
    assert material is not None
    needles = [material, material.hex().encode(), base64.b64encode(material),
               base64.urlsafe_b64encode(material).rstrip(b"=")] + [s.encode() for s in secrets]
    for f in (tmp_path / "state").iterdir():
        data = f.read_bytes()
        assert not any(n in data for n in needles), f.name
        assert f.stat().st_mode & 0o077 == 0
    meta = json.loads((tmp_path / "state" / "service.json").read_text())
    assert meta["tee"] == "simulated"
    entries = read_entries(tmp_path / "state" / "audit.jsonl")
    assert entries[0]["op"] == "init" and entries[0]["kids"] == [st.keystore.live("crm")[0].kid]
    assert verify_chain(tmp_path / "state" / "audit.jsonl")


def test_audit_chain_detects_edits(tmp_path):
    from cloakgate_keys.service.audit import AuditLog

    log = AuditLog(tmp_path / "a.jsonl")
    for i in range(3):
        log.record("rotate", ok=True, now=NOW + i, pack="crm", kid=f"aa{i}")
    AuditLog(tmp_path / "a.jsonl").record("retire", ok=True, now=NOW + 5)  # reopened: chain continues
    assert verify_chain(tmp_path / "a.jsonl")
    lines = (tmp_path / "a.jsonl").read_bytes().splitlines()
    (tmp_path / "a.jsonl").write_bytes(b"\n".join(lines[:1] + lines[2:]) + b"\n")
    assert not verify_chain(tmp_path / "a.jsonl")
    with pytest.raises(TypeError):
        log.record("x", ok=True, now=NOW, secret=b"bytes are refused")


def test_is_kid():
    assert is_kid("a2z") and not is_kid("a1z") and not is_kid("ab") and not is_kid("ABC")


def test_gramine_and_tsm_sealing(tmp_path):
    from datetime import UTC, datetime

    from cloakgate_keys.service import ratls

    root = tmp_path / "attestation"
    (root / "keys").mkdir(parents=True)
    (root / "keys" / "_sgx_mrenclave").write_bytes(b"E" * 16)
    (root / "attestation_type").write_text("dcap")
    (root / "user_report_data").write_bytes(bytes(64))
    (root / "quote").write_bytes(b"\x03\x00\x02\x00" + bytes(60))
    cfg = TeeConfig("gramine", gramine_root=root)
    st, _ = ServiceState.initialize(tmp_path / "g", cfg.sealer(), tee="gramine", custodians=1, threshold=1,
                                    packs=["crm"], now=NOW)
    kid = st.keystore.live("crm")[0].kid
    assert ServiceState.open(tmp_path / "g", cfg.sealer(), tee="gramine").keystore.live("crm")[0].kid == kid
    (root / "keys" / "_sgx_mrenclave").write_bytes(b"F" * 16)  # another enclave identity
    with pytest.raises(StateError):
        ServiceState.open(tmp_path / "g", cfg.sealer(), tee="gramine")
    identity = ratls.build_identity(cfg.provider(), now=datetime.now(UTC))
    parsed = ratls.parse_certificate(identity.cert_der)
    assert parsed.kind == "sgx"
    assert (root / "user_report_data").read_bytes() == ratls.report_data_for(parsed.claims_buffer)

    key_file = tmp_path / "derived.key"
    key_file.write_bytes(os.urandom(32))
    tsm = TeeConfig("tsm", tsm_root=tmp_path / "tsm", sealing_key_file=key_file)
    ServiceState.initialize(tmp_path / "t", tsm.sealer(), tee="tsm", custodians=1, threshold=1, now=NOW)
    ServiceState.open(tmp_path / "t", tsm.sealer(), tee="tsm")
    key_file.write_bytes(b"short")
    with pytest.raises(StateError):
        tsm.sealer()
    with pytest.raises(ValueError):
        TeeConfig("tsm")  # no sealing key: refused rather than an unsealed state
