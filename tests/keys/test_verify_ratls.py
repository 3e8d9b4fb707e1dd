"""RA-TLS certificate verifier against shared/vectors/ratls (facts from PROVENANCE.md)."""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from cloakgate_keys.attestation import cbor
from cloakgate_keys.attestation.certs import parse_cert, split_certificates
from cloakgate_keys.attestation.errors import VerificationError
from cloakgate_keys.attestation.policy import NOT_EVALUATED
from cloakgate_keys.attestation.ratls import (
    GRAMINE_LEGACY_OID_CONTENT,
    TCG_DICE_TAGGED_EVIDENCE,
    appraise_ratls_cert,
    verify_ratls_cert,
)
from tests.keys.vectors import VECTORS, at, lookup

RATLS = VECTORS / "ratls"
GRAMINE = "ccc_gramine_ratls_cert.pem"
INTEL = "ccc_intel_sgxsdk_ratls_cert.pem"
RATS = "ccc_rats_tls_cert.pem"
NOW = {GRAMINE: "2024-01-01T00:00:00Z", INTEL: "2024-06-01T00:00:00Z", RATS: "2023-06-01T00:00:00Z"}
INTEL_LEGACY_OID = "1.2.840.113741.1.13.1"


def _tcg_value(cert: bytes) -> bytes:
    ext = parse_cert(cert).extension(TCG_DICE_TAGGED_EVIDENCE)
    assert ext is not None
    return ext.value


def pem(name: str) -> bytes:
    return (RATLS / name).read_bytes()


def der(name: str) -> bytes:
    return split_certificates(pem(name))[0]


VECTOR_FACTS: list[tuple[str, str, dict[str, Any]]] = [
    (
        GRAMINE,
        "auto",
        {
            "tee": "sgx",
            "measurement": "0866e7ca11b9f4efe4bf39b2607f4e1299f111920d96d95719080f01b62b7585",
            "signer": "adc53501f21ced9b998e37a7a18e061c63e00315045fa57a49c18ef0a30d02ca",
            "product_id": 0,
            "svn": 0,
            "attributes_flags": 0x07,
            "debug": True,
            "report_data": "d8673446fe0f6842d4af0d182c8751d7e967039116deff5f85a43b2ca90c2831" + "00" * 32,
            "pck.ca": "platform",
            "ratls.format": "tcg",
            "ratls.pubkey_hash_alg": "sha-256",
            "ratls.pubkey_hash": "5a5a5b2d177433048e9d62409d1acc4ec526c06e294d09e69a36cff9369e4851",
            "ratls.claim_names": ["pubkey-hash"],
            "tcb_status": NOT_EVALUATED,
        },
    ),
    (
        GRAMINE,
        "gramine-legacy",
        {
            "measurement": "0866e7ca11b9f4efe4bf39b2607f4e1299f111920d96d95719080f01b62b7585",
            "debug": True,
            "report_data": "5a5a5b2d177433048e9d62409d1acc4ec526c06e294d09e69a36cff9369e4851" + "00" * 32,
            "ratls.format": "gramine-legacy",
            "ratls.pubkey_hash": "5a5a5b2d177433048e9d62409d1acc4ec526c06e294d09e69a36cff9369e4851",
        },
    ),
    (
        INTEL,
        "auto",
        {
            "measurement": "09e218a4be9dadbf7cdc82c45497d6d4f676d3b75445fc37a376f0b65b47de6a",
            "signer": "e0c86c51e05ad8592673db348155bddf4bcad6131a5205ce4265c0d795803ba2",
            "debug": True,
            "report_data": "e551b081d5079ad7565b5f20a45f276c2f5a6152c1802c0688e15a02e87a74c9" + "00" * 32,
            "pck.ca": "processor",
            "ratls.format": "tcg",
            "ratls.pubkey_hash": "f306ed602985371e3b485102db1fcdd4f4738329ce58b2f8d1c5d2cc79752026",
        },
    ),
    (
        RATS,
        "auto",
        {
            "measurement": "38e1b40b8c68186f359c97ecb6a89965d9d8638f2df06fbe18e84d79a266c041",
            "signer": "83d719e77deaca1470f6baf62a4d774303c899db69020f9c70ee1dfc08c7ce9e",
            "debug": True,
            "report_data": "3ef61b935603341747b96c602397da1c4761afe4eeed2cdc08cbf5f4ff61c533" + "00" * 32,
            "ratls.format": "tcg",
            "ratls.pubkey_hash": "72c0b70c2092741a4cfda0c2465487faf132998617b0aad53118aa5d6e180006",
            "ratls.claim_names": ["key_0", "key_1", "pubkey-hash"],  # extra claims are ignored
        },
    ),
]


@pytest.mark.parametrize(
    ("name", "evidence", "facts"), VECTOR_FACTS, ids=[f"{v[0]}-{v[1]}" for v in VECTOR_FACTS]
)
def test_vector_yields_provenance_facts(name: str, evidence: str, facts: dict[str, Any]) -> None:
    doc = appraise_ratls_cert(pem(name), now=at(NOW[name]), evidence=evidence).to_json()
    assert {path: lookup(doc, path) for path in facts} == facts


@pytest.mark.parametrize(
    ("name", "subject_cn", "curve", "not_before", "not_after", "spki_sha256"),
    [
        (GRAMINE, "RATLS", "secp384r1", "2001-01-01T00:00:00+00:00", "2030-12-31T23:59:59+00:00",
         "5a5a5b2d177433048e9d62409d1acc4ec526c06e294d09e69a36cff9369e4851"),
        (INTEL, "Intel SGX Enclave", "secp384r1", "2021-04-01T00:00:00+00:00", "2050-12-31T23:59:59+00:00",
         "f306ed602985371e3b485102db1fcdd4f4738329ce58b2f8d1c5d2cc79752026"),
        (RATS, "RATS-TLS", "secp256r1", "2023-02-22T16:10:22+00:00", "2024-02-22T17:10:22+00:00",
         "72c0b70c2092741a4cfda0c2465487faf132998617b0aad53118aa5d6e180006"),
    ],
)
def test_certificate_facts(name: str, subject_cn: str, curve: str, not_before: str, not_after: str,
                           spki_sha256: str) -> None:
    cert = parse_cert(der(name))
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert (cert.subject_cn, key.curve.name, cert.not_before.isoformat(), cert.not_after.isoformat()) == (
        subject_cn, curve, not_before, not_after
    )
    assert hashlib.sha256(cert.spki).hexdigest() == spki_sha256
    assert cert.extension(TCG_DICE_TAGGED_EVIDENCE) is not None


@pytest.mark.parametrize("name", [GRAMINE, INTEL, RATS])
def test_der_input_is_accepted(name: str) -> None:
    now = at(NOW[name])
    assert appraise_ratls_cert(der(name), now=now) == appraise_ratls_cert(pem(name), now=now)


def test_gramine_legacy_extension_oid_quirk() -> None:
    ext = parse_cert(der(GRAMINE)).extension_by_content(GRAMINE_LEGACY_OID_CONTENT)
    assert ext is not None and ext.oid == "0.6.9.42.840.113741.1337.6" and len(ext.value) == 4734


def test_intel_legacy_extension_holds_the_tcg_quote_bound_to_claims_not_key() -> None:
    cert = parse_cert(der(INTEL))
    legacy, tcg = cert.extension(INTEL_LEGACY_OID), cert.extension(TCG_DICE_TAGGED_EVIDENCE)
    assert legacy is not None and tcg is not None
    tagged = cbor.loads(tcg.value)
    assert isinstance(tagged, cbor.Tag) and tagged.number == 60000 and tagged.value[0] == legacy.value
    report_data = legacy.value[368:432]
    assert report_data[:32] == hashlib.sha256(tagged.value[1]).digest()
    assert report_data[:32] != hashlib.sha256(cert.spki).digest()
    with pytest.raises(VerificationError) as info:  # the Gramine legacy rule is not applied to this OID
        appraise_ratls_cert(pem(INTEL), now=at(NOW[INTEL]), evidence="gramine-legacy")
    assert info.value.reason == "ratls.no_evidence"


def test_gramine_claims_buffer_is_the_documented_one() -> None:
    tagged = cbor.loads(_tcg_value(GRAMINE_DER))
    assert tagged.value[1].hex() == (
        "a16b7075626b65792d686173685824820158205a5a5b2d1774"
            "33048e9d62409d1acc4ec526c06e294d09e69a36cff9369e4851"
    )


# --- policy and time --------------------------------------------------------------------------


@pytest.mark.parametrize("name", [GRAMINE, INTEL, RATS])
def test_debug_enclaves_need_explicit_switch(name: str) -> None:
    with pytest.raises(VerificationError) as info:
        verify_ratls_cert(pem(name), now=at(NOW[name]), accepted_tcb=frozenset({NOT_EVALUATED}))
    assert info.value.reason == "debug"
    claims = verify_ratls_cert(pem(name), now=at(NOW[name]), allow_debug=True, accepted_tcb={NOT_EVALUATED})
    assert claims.debug


@pytest.mark.parametrize(
    ("name", "now", "reason"),
    [
        (RATS, "2024-02-22T17:10:23Z", "ratls.validity"),
        (RATS, "2023-02-22T16:00:00Z", "ratls.validity"),
        (GRAMINE, "2031-01-01T00:00:00Z", "ratls.validity"),
        (GRAMINE, "2022-11-26T00:00:00Z", "sgx.pck_chain"),
        (INTEL, "2023-12-15T00:00:00Z", "sgx.pck_chain"),
        (INTEL, "2030-12-16T00:00:00Z", "sgx.pck_chain"),
    ],
)
def test_wrong_now_fails(name: str, now: str, reason: str) -> None:
    with pytest.raises(VerificationError) as info:
        appraise_ratls_cert(pem(name), now=at(now))
    assert info.value.reason == reason


def test_certificate_dates_can_be_ignored_but_evidence_dates_cannot() -> None:
    claims = appraise_ratls_cert(pem(RATS), now=at("2024-03-01T00:00:00Z"), check_validity=False)
    assert claims.measurement == "38e1b40b8c68186f359c97ecb6a89965d9d8638f2df06fbe18e84d79a266c041"
    with pytest.raises(VerificationError) as info:
        appraise_ratls_cert(pem(GRAMINE), now=at("2029-11-27T00:00:00Z"), check_validity=False)
    assert info.value.reason == "sgx.pck_chain"


# --- tampering and transplanted evidence ------------------------------------------------------


def _tlv_offset(data: bytes, needle: bytes) -> int:
    offset = data.find(needle)
    assert offset > 0
    return offset


GRAMINE_DER = der(GRAMINE)
_TCG_AT = _tlv_offset(GRAMINE_DER, bytes.fromhex("d9ea60"))
FLIPS = [
    (20, "tbs.signature_algorithm"),
    (60, "tbs.subject"),
    (160, "tbs.spki"),
    (500, "legacy_extension.quote"),
    (_TCG_AT + 1, "tcg.cbor_tag"),
    (_TCG_AT + 200, "tcg.quote_body"),
    (_TCG_AT + 4750, "tcg.claims"),
    (len(GRAMINE_DER) - 10, "signature"),
]


@pytest.mark.parametrize(("offset", "where"), FLIPS, ids=[f[1] for f in FLIPS])
def test_flipped_byte_fails_self_signature(offset: int, where: str) -> None:
    tampered = bytearray(GRAMINE_DER)
    tampered[offset] ^= 0x01
    with pytest.raises(VerificationError) as info:
        appraise_ratls_cert(bytes(tampered), now=at(NOW[GRAMINE]))
    assert info.value.reason == "ratls.self_signature"


def _cert_with(extensions: list[tuple[str, bytes]], key: ec.EllipticCurvePrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "transplant")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(at("2001-01-01T00:00:00Z"))
        .not_valid_after(at("2030-12-31T23:59:59Z"))
    )
    for oid, value in extensions:
        extension = x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), value)
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


def _spki_sha256(key: ec.EllipticCurvePrivateKey) -> bytes:
    spki = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).digest()


def _tagged(quote: bytes, claims: bytes) -> bytes:
    return (bytes.fromhex("d9ea6082") + b"\x59" + struct.pack(">H", len(quote)) + quote
            + b"\x58" + bytes([len(claims)]) + claims)


def _claims(pubkey_hash: bytes) -> bytes:
    return b"\xa1\x6bpubkey-hash\x58\x24\x82\x01\x58\x20" + pubkey_hash


def test_transplanted_tcg_evidence_fails_key_binding() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    tcg = parse_cert(GRAMINE_DER).extension(TCG_DICE_TAGGED_EVIDENCE)
    assert tcg is not None
    with pytest.raises(VerificationError) as info:
        appraise_ratls_cert(_cert_with([(TCG_DICE_TAGGED_EVIDENCE, tcg.value)], key), now=at(NOW[GRAMINE]))
    assert info.value.reason == "ratls.pubkey_binding"


def test_rewritten_claims_fail_report_data_binding() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    quote = cbor.loads(_tcg_value(GRAMINE_DER)).value[0]
    forged = _tagged(quote, _claims(_spki_sha256(key)))
    assert cbor.loads(forged).value[0] == quote
    with pytest.raises(VerificationError) as info:
        appraise_ratls_cert(_cert_with([(TCG_DICE_TAGGED_EVIDENCE, forged)], key), now=at(NOW[GRAMINE]))
    assert info.value.reason == "ratls.report_data_binding"


def test_transplanted_legacy_quote_fails_report_data_binding() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    legacy = parse_cert(GRAMINE_DER).extension_by_content(GRAMINE_LEGACY_OID_CONTENT)
    assert legacy is not None
    cert = _cert_with([("0.6.9.42.840.113741.1337.6", legacy.value)], key)
    with pytest.raises(VerificationError) as info:
        appraise_ratls_cert(cert, now=at(NOW[GRAMINE]))
    assert info.value.reason == "ratls.report_data_binding"


def test_certificate_without_evidence_is_refused() -> None:
    cert = _cert_with([], ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(VerificationError) as info:
        appraise_ratls_cert(cert, now=at(NOW[GRAMINE]))
    assert info.value.reason == "ratls.no_evidence"


# --- the CBOR subset --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "value"),
    [
        ("00", 0), ("17", 23), ("1818", 24), ("190100", 256), ("20", -1), ("4401020304", b"\x01\x02\x03\x04"),
        ("6161", "a"), ("820102", [1, 2]), ("a1616101", {"a": 1}), ("f4", False), ("f5", True), ("f6", None),
    ],
)
def test_cbor_decodes(data: str, value: Any) -> None:
    assert cbor.loads(bytes.fromhex(data)) == value


@pytest.mark.parametrize(
    "data",
    ["", "5f", "9f", "bf", "a2616101616102", "0000", "44010203", "f93c00", "1c", "62ff", "81" * 20 + "00"],
    ids=["empty", "indefinite-bstr", "indefinite-array", "indefinite-map", "duplicate-key", "trailing",
         "truncated", "float", "reserved", "bad-utf8", "too-deep"],
)
def test_cbor_refuses(data: str) -> None:
    with pytest.raises(cbor.CborError):
        cbor.loads(bytes.fromhex(data))
