"""Simulated TEE evidence: signed, refused unless allowed, any changed byte fails."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloakgate_keys.attestation import simulated
from cloakgate_keys.attestation.simulated import SimulatedEvidenceError, SimulatedPlatform

NOW = datetime(2025, 1, 1, tzinfo=UTC)
MEAS = "11" * 32
RD = bytes(range(64))


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> tuple[SimulatedPlatform, str]:
    d = tmp_path_factory.mktemp("platform")
    return SimulatedPlatform.create(d), str(d)


@pytest.fixture(scope="module")
def evidence(platform: tuple[SimulatedPlatform, str]) -> bytes:
    return platform[0].report(RD, measurement=MEAS, signer="22" * 32, product_id=3, svn=7, now=NOW)


def test_verify_returns_simulated_claims(platform, evidence):
    claims = simulated.verify(evidence, now=NOW, allow_simulated=True, platform_dir=platform[1])
    assert claims.tee == "simulated" and claims.simulated
    assert claims.measurement == MEAS and claims.signer == "22" * 32
    assert (claims.product_id, claims.svn, claims.debug) == (3, 7, False)
    assert claims.tcb_status == "Simulated" and claims.report_data == RD
    assert claims.to_json()["SIMULATED"] is True


def test_key_by_value_or_directory(platform, evidence):
    pub = platform[0].public_key
    for key in (pub, pub.hex()):
        assert simulated.verify(evidence, now=NOW, allow_simulated=True, platform_key=key).measurement == MEAS


@pytest.mark.parametrize("kwargs, code", [
    ({}, "not_allowed"),
    ({"allow_simulated": True}, "no_platform_key"),
])
def test_refused_without_explicit_configuration(evidence, kwargs, code):
    with pytest.raises(SimulatedEvidenceError) as e:
        simulated.verify(evidence, now=NOW, **kwargs)
    assert e.value.code.endswith(code)


def test_other_platform_refused(evidence, tmp_path):
    other = SimulatedPlatform.create(tmp_path)
    with pytest.raises(SimulatedEvidenceError) as e:
        simulated.verify(evidence, now=NOW, allow_simulated=True, platform_key=other.public_key)
    assert e.value.code.endswith("signature")


def test_debug_refused_unless_allowed(platform):
    ev = platform[0].report(RD, measurement=MEAS, debug=True, now=NOW)
    with pytest.raises(SimulatedEvidenceError):
        simulated.verify(ev, now=NOW, allow_simulated=True, platform_dir=platform[1])
    assert simulated.verify(ev, now=NOW, allow_simulated=True, allow_debug=True,
                            platform_dir=platform[1]).debug


def test_accepted_tcb_and_future_evidence(platform, evidence):
    with pytest.raises(SimulatedEvidenceError):
        simulated.verify(evidence, now=NOW, allow_simulated=True, platform_dir=platform[1],
                         accepted_tcb={"UpToDate"})
    with pytest.raises(SimulatedEvidenceError):
        simulated.verify(evidence, now=NOW - timedelta(hours=1), allow_simulated=True,
                         platform_dir=platform[1])


def test_every_byte_is_signed(platform, evidence):
    for i in range(len(evidence)):
        bad = bytearray(evidence)
        bad[i] ^= 0x01
        with pytest.raises(SimulatedEvidenceError):
            simulated.verify(bytes(bad), now=NOW, allow_simulated=True, platform_dir=platform[1])


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_truncation_and_extension_fail(platform, evidence, data):
    cut = data.draw(st.integers(0, len(evidence) - 1))
    tail = data.draw(st.binary(min_size=1, max_size=8))
    for bad in (evidence[:cut], evidence + tail):
        with pytest.raises(SimulatedEvidenceError):
            simulated.verify(bad, now=NOW, allow_simulated=True, platform_dir=platform[1])


def test_validly_signed_but_non_canonical_body_refused(platform):
    body = b'{"v": 1}'
    signed = simulated.MAGIC + struct.pack(">I", len(body)) + body
    ev = signed + platform[0].signing_key.sign(signed)
    with pytest.raises(SimulatedEvidenceError) as e:
        simulated.verify(ev, now=NOW, allow_simulated=True, platform_dir=platform[1])
    assert e.value.code.endswith("malformed")


def test_sealing_key_depends_on_measurement_and_platform(platform, tmp_path):
    p = platform[0]
    assert p.sealing_key(MEAS) == SimulatedPlatform.load(platform[1]).sealing_key(MEAS)
    assert p.sealing_key(MEAS) != p.sealing_key("33" * 32)
    assert SimulatedPlatform.create(tmp_path).sealing_key(MEAS) != p.sealing_key(MEAS)
    assert "secret" not in repr(p) and p.secret.hex() not in repr(p)


def test_report_data_must_be_64_bytes(platform):
    with pytest.raises(ValueError):
        platform[0].report(b"short", measurement=MEAS, now=NOW)
