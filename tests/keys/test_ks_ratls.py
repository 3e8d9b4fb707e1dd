"""RA-TLS certificate: interoperable format, binding to the key, strict CBOR."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from cloakgate_keys.attestation.providers import Evidence, SimulatedProvider
from cloakgate_keys.attestation.simulated import SimulatedPlatform
from cloakgate_keys.service import cbor, ratls
from cloakgate_keys.service.evidence import EvidenceRejected, VerifierConfig, verify

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors" / "ratls"
NOW = datetime(2025, 1, 1, tzinfo=UTC)
MEAS = "cd" * 32


def test_claims_buffer_matches_gramine_vector():
    spki_hash = bytes.fromhex("5a5a5b2d177433048e9d62409d1acc4ec526c06e294d09e69a36cff9369e4851")
    expected = bytes.fromhex("a16b7075626b65792d686173685824820158205a5a5b2d177433048e9d62409d1acc4ec5"
                             "26c06e294d09e69a36cff9369e4851")
    assert cbor.encode({"pubkey-hash": cbor.encode([1, spki_hash])}) == expected
    assert hashlib.sha256(expected).hexdigest() == (
        "d8673446fe0f6842d4af0d182c8751d7e967039116deff5f85a43b2ca90c2831")


@pytest.mark.skipif(not VECTORS.exists(), reason="shared vectors not present")
@pytest.mark.parametrize("name, spki_sha256", [
    ("ccc_rats_tls_cert.pem", "72c0b70c2092741a4cfda0c2465487faf132998617b0aad53118aa5d6e180006"),
    ("ccc_intel_sgxsdk_ratls_cert.pem", "f306ed602985371e3b485102db1fcdd4f4738329ce58b2f8d1c5d2cc79752026"),
])
def test_parses_interoperable_vector_certs(name, spki_sha256):
    cert = x509.load_pem_x509_certificate((VECTORS / name).read_bytes())
    from cryptography.hazmat.primitives import serialization

    parsed = ratls.parse_certificate(cert.public_bytes(serialization.Encoding.DER))
    assert parsed.kind == "sgx"
    assert hashlib.sha256(parsed.spki).hexdigest() == spki_sha256
    # the quote's REPORTDATA (SGX v3: offset 368) binds the claims buffer
    assert parsed.data[368:400] == hashlib.sha256(parsed.claims_buffer).digest()
    assert parsed.data[400:432] == bytes(32)


def clock() -> float:
    return NOW.timestamp()


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    return SimulatedPlatform.create(tmp_path_factory.mktemp("platform"))


def verified(identity: ratls.RatlsIdentity, platform: SimulatedPlatform):
    parsed = ratls.parse_certificate(identity.cert_der)
    claims = verify(VerifierConfig(allow_simulated=True, sim_platform_key=platform.public_key),
                    parsed.kind, parsed.data, parsed.aux, now=NOW)
    ratls.check_binding(parsed, claims)
    return parsed, claims


def test_identity_binds_fresh_key(platform):
    provider = SimulatedProvider(platform, measurement=MEAS, clock=clock)
    a = ratls.build_identity(provider, now=NOW)
    b = ratls.build_identity(provider, now=NOW)
    pa, ca = verified(a, platform)
    assert pa.kind == "simulated" and ca.measurement == MEAS
    assert pa.spki == ratls.spki_der(a.key) != ratls.spki_der(b.key)
    ext = x509.load_der_x509_certificate(a.cert_der).extensions.get_extension_for_oid(ratls.TCG_DICE_OID)
    assert not ext.critical
    assert "PrivateKey" not in repr(a) and "evidence" not in repr(a)


def test_evidence_for_another_key_breaks_binding(platform):
    provider = SimulatedProvider(platform, measurement=MEAS, clock=clock)
    other = ec.generate_private_key(ec.SECP384R1())
    key = ec.generate_private_key(ec.SECP384R1())
    claims_other = ratls.claims_buffer(ratls.spki_der(other))
    ev = provider.evidence(ratls.report_data_for(claims_other))
    # evidence binds ``other``; certificate is for ``key``
    der = ratls.build_certificate(key, ratls.extension_value(ev, claims_other), now=NOW)
    with pytest.raises(ratls.RatlsError) as e:
        verified(ratls.RatlsIdentity(der, key, ev), platform)
    assert e.value.code.endswith("binding")
    # claims buffer for ``key`` but evidence over another claims buffer
    der = ratls.build_certificate(key, ratls.extension_value(ev, ratls.claims_buffer(ratls.spki_der(key))),
                                  now=NOW)
    with pytest.raises(ratls.RatlsError):
        verified(ratls.RatlsIdentity(der, key, ev), platform)


def test_simulated_refused_without_allow(platform):
    ident = ratls.build_identity(SimulatedProvider(platform, measurement=MEAS, clock=clock), now=NOW)
    parsed = ratls.parse_certificate(ident.cert_der)
    with pytest.raises(EvidenceRejected):
        verify(VerifierConfig(sim_platform_key=platform.public_key), parsed.kind, parsed.data, b"", now=NOW)


def test_unknown_tag_and_missing_extension():
    key = ec.generate_private_key(ec.SECP384R1())
    der = ratls.build_certificate(key, cbor.encode(cbor.Tag(99, [b"x", b"y"])), now=NOW)
    with pytest.raises(ratls.RatlsError) as e:
        ratls.parse_certificate(der)
    assert e.value.code.endswith("unsupported_evidence")
    with pytest.raises(ratls.RatlsError):
        ratls.parse_certificate(b"not a certificate")


def test_snp_and_quote_kinds():
    claims = b"c"
    snp = Evidence("snp", b"r" * 1184, b"table")
    assert cbor.decode(ratls.extension_value(snp, claims)) == cbor.Tag(ratls.TAG_SNP, [b"r" * 1184, claims,
                                                                                     b"table"])
    key = ec.generate_private_key(ec.SECP384R1())
    tdx_quote = (4).to_bytes(2, "little") + b"\x02\x00" + (0x81).to_bytes(4, "little") + b"\x00" * 40
    der = ratls.build_certificate(key, ratls.extension_value(Evidence("tdx", tdx_quote), claims), now=NOW)
    assert ratls.parse_certificate(der).kind == "tdx"


@pytest.mark.parametrize("data", [
    b"\x5f\x41\x61\xff",  # indefinite-length byte string
    b"\xa2\x61a\x01\x61a\x02",  # duplicate map key
    b"\x01\x02",  # trailing bytes
    b"\x18\x01",  # non-minimal integer
    b"\x5a\xff\xff\xff\xff",  # length beyond the data
    b"\x81" * 40 + b"\x00",  # too deep
])
def test_cbor_strict(data):
    with pytest.raises(cbor.CBORError):
        cbor.decode(data)


def test_cbor_round_trip():
    obj = cbor.Tag(60000, [b"\x00" * 300, "text", -5, 2**40, {"k": [1, 2]}])
    assert cbor.decode(cbor.encode(obj)) == obj


@pytest.mark.skipif(not VECTORS.exists(), reason="shared vectors not present")
def test_real_ratls_cert_through_dispatcher_and_binding():
    from cryptography.hazmat.primitives import serialization

    from cloakgate_keys.client import ServicePolicy, ServiceRejected

    cert = x509.load_pem_x509_certificate((VECTORS / "ccc_rats_tls_cert.pem").read_bytes())
    parsed = ratls.parse_certificate(cert.public_bytes(serialization.Encoding.DER))
    when = datetime(2023, 6, 1, tzinfo=UTC)
    with pytest.raises(EvidenceRejected) as e:
        verify(VerifierConfig(), parsed.kind, parsed.data, parsed.aux, now=when)
    assert e.value.reason == "debug"  # every vector enclave is a debug enclave
    lenient = VerifierConfig(allow_debug=True, accepted_tcb=frozenset({"NotEvaluated"}))
    claims = verify(lenient, parsed.kind, parsed.data, parsed.aux, now=when)
    ratls.check_binding(parsed, claims)
    mrenclave = "38e1b40b8c68186f359c97ecb6a89965d9d8638f2df06fbe18e84d79a266c041"
    assert claims.tee == "sgx" and claims.measurement == mrenclave
    ServicePolicy(measurements=frozenset({mrenclave}), allow_debug=True,
                  accepted_tcb=frozenset({"NotEvaluated"})).check(claims)
    with pytest.raises(ServiceRejected):
        ServicePolicy(measurements=frozenset({"00" * 32}), allow_debug=True,
                      accepted_tcb=frozenset({"NotEvaluated"})).check(claims)
    # the same quote under another certificate key does not bind
    other = ratls.RatlsEvidence(parsed.kind, parsed.data, b"", parsed.claims_buffer,
                                ratls.spki_der(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(ratls.RatlsError):
        ratls.check_binding(other, claims)


def test_hardware_kinds_go_through_dispatcher():
    with pytest.raises(EvidenceRejected) as e:
        verify(VerifierConfig(), "sgx", b"\x03\x00" + bytes(100), b"", now=NOW)
    assert e.value.reason != "invalid" and e.value.reason.startswith("sgx")
    with pytest.raises(EvidenceRejected) as e:
        verify(VerifierConfig(), "bogus", b"x", b"", now=NOW)
    assert e.value.reason == "unsupported_kind"


def test_snp_certificate_table_to_pem():
    import struct
    import uuid

    from cryptography.hazmat.primitives import serialization

    from cloakgate_keys.service.evidence import snp_certificates_pem

    key = ec.generate_private_key(ec.SECP384R1())
    der = x509.load_der_x509_certificate(ratls.build_certificate(key, b"\xa0", now=NOW)).public_bytes(
        serialization.Encoding.DER)
    vcek = uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd").bytes
    other = uuid.UUID("00000000-0000-0000-0000-000000000001").bytes
    header_len = 24 * 3
    table = (vcek + struct.pack("<II", header_len, len(der)) + other + struct.pack("<II", header_len, 4)
             + bytes(24) + der)
    pem = snp_certificates_pem(table)
    assert x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER) == der
    assert pem.count(b"BEGIN CERTIFICATE") == 1  # unknown GUIDs are skipped
    with pytest.raises(EvidenceRejected):
        snp_certificates_pem(vcek + struct.pack("<II", 10_000, 5))  # out of bounds, unterminated
