"""SGX DCAP quote v3 verifier against shared/vectors/sgx (facts from PROVENANCE.md)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cloakgate_keys.attestation import anchors
from cloakgate_keys.attestation.collateral import IntelCollateral, parse_intel_collateral
from cloakgate_keys.attestation.errors import VerificationError
from cloakgate_keys.attestation.policy import INTEL_TCB_STATUSES, NOT_EVALUATED
from cloakgate_keys.attestation.sgx import appraise_sgx_quote, verify_sgx_quote
from tests.keys.vectors import VECTORS, at, lookup

ANY_TCB = INTEL_TCB_STATUSES | {NOT_EVALUATED}
QVL_NOW = "2025-07-01T00:00:00Z"


def quote(name: str) -> bytes:
    path = VECTORS / "sgx" / name
    if path.suffix == ".json":
        return bytes.fromhex(json.loads(path.read_text())["QuoteHex"])
    return path.read_bytes()


def qvl_collateral() -> IntelCollateral:
    return parse_intel_collateral((VECTORS / "sgx" / "dcapqvl_sgx_quote_v3_collateral.json").read_bytes())


QE_FACTS = {"qe.mrsigner": anchors.SGX_QE_IDENTITY[0].hex(), "qe.isv_prod_id": 1, "qe.attributes_flags": 0x15}
AZ_FACTS = {
    "signer": "feb995eb86c349ac98e5afbbb5732ca7376ec9979002702ea17ad476e0853a04",
    "product_id": 1,
    "svn": 1,
    "xfrm": 0x07,
    "qe_svn": 9,
    "pce_svn": 14,
    "report_data": "7192385c3c0605de55bb9476ce1d90748190ecb32a8eed7f5207b30cf6a1fe89" + "00" * 32,
    "pck.ca": "processor",
    "pck.fmspc": "00906ed50000",
    "pck.pce_svn": 13,
    "tcb_status": NOT_EVALUATED,
    **QE_FACTS,
}

# (vector, fixed now, with collateral, facts as dotted paths into Claims.to_json())
VECTOR_FACTS: list[tuple[str, str, bool, dict[str, Any]]] = [
    (
        "dcapqvl_sgx_quote_v3.bin",
        QVL_NOW,
        True,
        {
            "tee": "sgx",
            "quote_version": 3,
            "qe_svn": 10,
            "pce_svn": 15,
            "user_data": "3987622ee6968a54977c8626ef47123500000000",
            "measurement": "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb",
            "signer": "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6",
            "attributes_flags": 0x05,
            "debug": False,
            "xfrm": 0xE7,
            "miscselect": 0,
            "product_id": 0,
            "svn": 0,
            "cpusvn": "0b0b1a18ffff04000000000000000000",
            "report_data": b"Hello, world!".hex() + "00" * 51,
            "qe.isv_svn": 10,
            "qe.mrenclave": "96b347a64e5a045e27369c26e6dcda51fd7c850e9b3a3a79e718f43261dee1e4",
            "pck.ca": "processor",
            "pck.fmspc": "00a067110000",
            "pck.pce_id": "0000",
            "pck.pce_svn": 13,
            "pck.tcb_components": [11, 11, 2, 2, 255, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            "pck.ppid": "d04ec06d4e6d92dc90d0ad3cf5ee2ddf",
            "tcb_status": "ConfigurationAndSWHardeningNeeded",
            "advisory_ids": ["INTEL-SA-00289", "INTEL-SA-00615"],
            "tcb.platform_status": "ConfigurationAndSWHardeningNeeded",
            "tcb.qe_status": "UpToDate",
            "tcb.tcb_date": "2024-03-13T00:00:00Z",
            "tcb.evaluation_data_number": 17,
            "trailing_bytes": 0,
            **QE_FACTS,
        },
    ),
    (
        "trustee_occlum_quote_v3_debug.dat",
        "2024-01-01T00:00:00Z",
        False,
        {
            "qe_svn": 8,
            "pce_svn": 13,
            "user_data": "dccde9b31ce8860548173bb4a2a57a1600000000",
            "measurement": "8f173e4613ff05c52aaf04162d234edae8c9977eae47eb2299ae16a553011c68",
            "signer": "83d719e77deaca1470f6baf62a4d774303c899db69020f9c70ee1dfc08c7ce9e",
            "attributes_flags": 0x07,
            "debug": True,
            "xfrm": 0xE7,
            "miscselect": 1,
            "product_id": 0,
            "svn": 0,
            "cpusvn": "06060c0cffff00000000000000000000",
            "report_data": b"test".hex() + "00" * 60,
            "pck.ca": "platform",
            "pck.fmspc": "00606a000000",
            "pck.pce_svn": 11,
            "pck.tcb_components": [4, 4, 3, 3, 255, 255, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            "pck.platform_instance_id": "c8c0cfb23d3dd90b06d55c0641693a7a",
            "tcb_status": NOT_EVALUATED,
            **QE_FACTS,
        },
    ),
    (
        "azsamples_intelsdk_enclave_info_release.json",
        "2024-01-01T00:00:00Z",
        False,
        {
            "measurement": "d37d983a85d63fb49649610e2eba0930ecdbff6d113aca3ff3fc7261696c0134",
            "attributes_flags": 0x05,
            "debug": False,
            **AZ_FACTS,
        },
    ),
    (
        "azsamples_intelsdk_enclave_info_debug.json",
        "2024-01-01T00:00:00Z",
        False,
        {
            "measurement": "3e2df98fc7fd042b842121cae6a8086d546e7970db55103725cc1dcbc2c48814",
            "attributes_flags": 0x07,
            "debug": True,
            **AZ_FACTS,
        },
    ),
]


@pytest.mark.parametrize(
    ("name", "now", "with_collateral", "facts"), VECTOR_FACTS, ids=[v[0] for v in VECTOR_FACTS]
)
def test_vector_yields_provenance_facts(
    name: str, now: str, with_collateral: bool, facts: dict[str, Any]
) -> None:
    collateral = qvl_collateral() if with_collateral else None
    claims = appraise_sgx_quote(quote(name), now=at(now), collateral=collateral).to_json()
    assert {path: lookup(claims, path) for path in facts} == facts


def test_embedded_root_is_the_vectors_root() -> None:
    assert anchors.INTEL_SGX_ROOT_CA_PEM == (VECTORS / "certs" / "intel_sgx_root_ca.pem").read_bytes()
    der = (VECTORS / "certs" / "intel_sgx_root_ca.der").read_bytes()
    assert anchors.intel_sgx_root().public_bytes(serialization.Encoding.DER) == der
    assert hashlib.sha256(der).hexdigest() == anchors.INTEL_SGX_ROOT_CA_SHA256


def test_azsamples_binding_is_sha256_of_enclave_held_data() -> None:
    doc = json.loads((VECTORS / "sgx" / "azsamples_intelsdk_enclave_info_release.json").read_text())
    claims = appraise_sgx_quote(
        quote("azsamples_intelsdk_enclave_info_release.json"), now=at("2024-01-01T00:00:00Z")
    )
    assert claims.report_data == hashlib.sha256(bytes.fromhex(doc["EnclaveHeldDataHex"])).digest() + bytes(32)
    assert claims.measurement == doc["MrEnclaveHex"].lower() and claims.signer == doc["MrSignerHex"].lower()


def test_occlum_claims_agree_with_trustee_ear_token_example() -> None:
    ear = json.loads((VECTORS / "sgx" / "trustee_occlum_ear_token_claims_example.json").read_text())
    sgx = ear["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["sgx"]
    claims = appraise_sgx_quote(quote("trustee_occlum_quote_v3_debug.dat"), now=at("2024-01-01T00:00:00Z"))
    assert claims.measurement == sgx["body"]["mr_enclave"]
    assert claims.signer == sgx["body"]["mr_signer"]
    assert claims.report_data.hex() == sgx["body"]["report_data"]
    assert claims.extra["pck"]["ppid"] == sgx["platform_provider_id"]
    assert claims.extra["pck"]["sgx_type"] == sgx["sgx_type"]
    assert claims.extra["pck"]["configuration"] == {
        "dynamic_platform": sgx["is_dynamic_platform"],
        "cached_keys": sgx["is_cached_keys"],
        "smt_enabled": sgx["is_smt_enabled"],
    }


# --- policy -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kwargs", "reason"),
    [
        ("trustee_occlum_quote_v3_debug.dat", {"accepted_tcb": ANY_TCB}, "debug"),
        ("azsamples_intelsdk_enclave_info_debug.json", {"accepted_tcb": ANY_TCB}, "debug"),
        ("azsamples_intelsdk_enclave_info_release.json", {}, "tcb.unevaluated"),
        ("trustee_occlum_quote_v3_debug.dat", {"allow_debug": True}, "tcb.unevaluated"),
    ],
)
def test_policy_refusals_without_collateral(name: str, kwargs: dict[str, Any], reason: str) -> None:
    with pytest.raises(VerificationError) as info:
        verify_sgx_quote(quote(name), now=at("2024-01-01T00:00:00Z"), **kwargs)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("azsamples_intelsdk_enclave_info_release.json", {"accepted_tcb": frozenset({NOT_EVALUATED})}),
        ("trustee_occlum_quote_v3_debug.dat", {"allow_debug": True, "accepted_tcb": {NOT_EVALUATED}}),
    ],
)
def test_policy_accepts_when_explicitly_allowed(name: str, kwargs: dict[str, Any]) -> None:
    assert verify_sgx_quote(quote(name), now=at("2024-01-01T00:00:00Z"), **kwargs).tee == "sgx"


STRICT = frozenset({"UpToDate"})
HARDENING = frozenset({"UpToDate", "ConfigurationAndSWHardeningNeeded"})


@pytest.mark.parametrize(
    ("accepted", "advisories", "reason"),
    [
        (None, None, "tcb.status"),  # default: UpToDate only
        (STRICT, None, "tcb.status"),
        (HARDENING, frozenset({"INTEL-SA-00615"}), "tcb.advisory"),
        (HARDENING, frozenset({"INTEL-SA-00289", "INTEL-SA-00615"}), None),
        (HARDENING, None, None),
    ],
)
def test_qvl_quote_tcb_policy(accepted: frozenset[str] | None, advisories: frozenset[str] | None,
                              reason: str | None) -> None:
    def run() -> None:
        verify_sgx_quote(quote("dcapqvl_sgx_quote_v3.bin"), now=at(QVL_NOW), collateral=qvl_collateral(),
                         accepted_tcb=accepted, allowed_advisories=advisories)

    if reason is None:
        run()
    else:
        with pytest.raises(VerificationError) as info:
            run()
        assert info.value.reason == reason


# --- time -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "now", "with_collateral", "reason"),
    [
        # before the TCB info issue date, then after the QE identity's next update
        ("dcapqvl_sgx_quote_v3.bin", "2025-06-19T10:30:00Z", True, "collateral.expired"),
        ("dcapqvl_sgx_quote_v3.bin", "2025-07-19T10:30:00Z", True, "collateral.expired"),
        ("dcapqvl_sgx_quote_v3.bin", "2025-08-01T00:00:00Z", True, "collateral.expired"),
        ("dcapqvl_sgx_quote_v3.bin", "2023-09-20T00:00:00Z", False, "sgx.pck_chain"),  # chain not yet valid
        ("dcapqvl_sgx_quote_v3.bin", "2030-09-21T00:00:00Z", False, "sgx.pck_chain"),
        ("trustee_occlum_quote_v3_debug.dat", "2023-04-26T00:00:00Z", False, "sgx.pck_chain"),
        ("trustee_occlum_quote_v3_debug.dat", "2030-04-27T00:00:00Z", False, "sgx.pck_chain"),
        ("azsamples_intelsdk_enclave_info_release.json", "2030-02-28T00:00:00Z", False, "sgx.pck_chain"),
    ],
)
def test_wrong_now_fails(name: str, now: str, with_collateral: bool, reason: str) -> None:
    collateral = qvl_collateral() if with_collateral else None
    with pytest.raises(VerificationError) as info:
        appraise_sgx_quote(quote(name), now=at(now), collateral=collateral)
    assert info.value.reason == reason


# --- tampering --------------------------------------------------------------------------------

QVL = quote("dcapqvl_sgx_quote_v3.bin")
_SIG = 436  # signature data of a v3 quote
_PEMS = [i for i in range(len(QVL)) if QVL.startswith(b"-----BEGIN CERTIFICATE-----", i)]
FLIPS = [
    (0, "header.version", "sgx.version"),
    (2, "header.att_key_type", "sgx.key_type"),
    (4, "header.reserved", "sgx.parse"),
    (8, "header.qe_svn", "sgx.quote_signature"),
    (12, "header.qe_vendor_id", "sgx.qe_vendor"),
    (30, "header.user_data", "sgx.quote_signature"),
    (48, "body.cpusvn", "sgx.quote_signature"),
    (96, "body.attributes", "sgx.quote_signature"),
    (112, "body.mrenclave", "sgx.quote_signature"),
    (176, "body.mrsigner", "sgx.quote_signature"),
    (304, "body.isvprodid", "sgx.quote_signature"),
    (368, "body.report_data", "sgx.quote_signature"),
    (431, "body.last_byte", "sgx.quote_signature"),
    (432, "signature_data_len", "sgx.parse"),
    (_SIG + 1, "sig.quote_signature.r", "sgx.quote_signature"),
    (_SIG + 40, "sig.quote_signature.s", "sgx.quote_signature"),
    (_SIG + 64, "sig.attestation_key", "sgx.qe_binding"),
    (_SIG + 138, "sig.qe_report.cpusvn", "sgx.qe_signature"),
    (_SIG + 128 + 320, "sig.qe_report.report_data", "sgx.qe_signature"),
    (_SIG + 517, "sig.qe_report_signature", "sgx.qe_signature"),
    (_SIG + 576, "sig.qe_auth_data_len", "sgx.parse"),
    (_SIG + 581, "sig.qe_auth_data", "sgx.qe_binding"),
    (_SIG + 610, "sig.cert_data_type", "sgx.parse"),
    (_SIG + 612, "sig.cert_data_len", "sgx.parse"),
    (_PEMS[0] + 5, "pck.pem_header", "sgx.pck_chain"),
    (_PEMS[0] + 100, "pck.leaf", "sgx.pck_chain"),
    (_PEMS[0] + 900, "pck.leaf_sgx_extension", "sgx.pck_chain"),
    (_PEMS[1] + 100, "pck.intermediate", "sgx.pck_chain"),
    (_PEMS[2] + 100, "pck.root", "sgx.pck_chain"),
]


@pytest.mark.parametrize(("offset", "where", "reason"), FLIPS, ids=[f[1] for f in FLIPS])
def test_flipped_byte_fails(offset: int, where: str, reason: str) -> None:
    tampered = bytearray(QVL)
    tampered[offset] ^= 0x01
    with pytest.raises(VerificationError) as info:
        appraise_sgx_quote(bytes(tampered), now=at(QVL_NOW))
    assert info.value.reason == reason


def test_pem_terminator_is_not_signed_and_is_ignored() -> None:
    tampered = bytearray(QVL)
    tampered[-1] ^= 0x01  # the NUL ending the PEM blob
    assert appraise_sgx_quote(bytes(tampered), now=at(QVL_NOW)).measurement == appraise_sgx_quote(
        QVL, now=at(QVL_NOW)
    ).measurement


@pytest.mark.parametrize("cut", [0, 47, 431, 435, 1000, len(QVL) - 1])
def test_truncated_quote_fails(cut: int) -> None:
    with pytest.raises(VerificationError):
        appraise_sgx_quote(QVL[:cut], now=at(QVL_NOW))


def test_swapped_root_fails_chain() -> None:
    collateral = json.loads((VECTORS / "sgx" / "dcapqvl_sgx_quote_v3_collateral.json").read_text())
    other_root = x509.load_pem_x509_certificates(collateral["tcb_info_issuer_chain"].encode())[0]
    with pytest.raises(VerificationError) as info:
        appraise_sgx_quote(QVL, now=at(QVL_NOW), root=other_root)
    assert info.value.reason == "sgx.pck_chain"


def _collateral_with(**changes: str) -> IntelCollateral:
    doc = json.loads((VECTORS / "sgx" / "dcapqvl_sgx_quote_v3_collateral.json").read_text())
    doc.update(changes)
    return parse_intel_collateral(json.dumps(doc).encode())


def _tcb_info_text() -> str:
    doc = json.loads((VECTORS / "sgx" / "dcapqvl_sgx_quote_v3_collateral.json").read_text())
    return str(doc["tcb_info"])


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"tcb_info": _tcb_info_text().replace('"tcbStatus":"OutOfDate"', '"tcbStatus":"UpToDate"', 1)},
         "collateral.signature"),
        # the signature covers the transmitted bytes: a re-serialization does not verify
        ({"tcb_info": json.dumps(json.loads(_tcb_info_text()), indent=1)}, "collateral.signature"),
        ({"tcb_info_signature": "00" * 64}, "collateral.signature"),
        ({"qe_identity": json.dumps(json.loads(json.loads(
            (VECTORS / "sgx" / "dcapqvl_sgx_quote_v3_collateral.json").read_text())["qe_identity"]))},
         "collateral.signature"),
        # a PCK CRL from another CA (Platform CA, TDX collateral) for a Processor-CA PCK
        ({"pck_crl": json.loads((VECTORS / "tdx" / "dcapqvl_tdx_quote_collateral.json").read_text())[
            "pck_crl"]}, "collateral.crl"),
        # a chain without the TCB Signing certificate
        ({"tcb_info_issuer_chain": (VECTORS / "certs" / "intel_sgx_root_ca.pem").read_text()},
         "collateral.chain"),
        ({"tcb_info_issuer_chain": ""}, "collateral.parse"),
    ],
)
def test_tampered_collateral_fails(changes: dict[str, str], reason: str) -> None:
    with pytest.raises(VerificationError) as info:
        appraise_sgx_quote(QVL, now=at(QVL_NOW), collateral=_collateral_with(**changes))
    assert info.value.reason == reason


def test_tdx_collateral_does_not_apply_to_sgx_quote() -> None:
    tdx = parse_intel_collateral((VECTORS / "tdx" / "dcapqvl_tdx_quote_collateral.json").read_bytes())
    with pytest.raises(VerificationError) as info:
        appraise_sgx_quote(QVL, now=at(QVL_NOW), collateral=tdx)
    assert info.value.reason in {"collateral.crl", "collateral.mismatch"}


def test_tdx_quote_is_not_an_sgx_quote() -> None:
    with pytest.raises(VerificationError) as info:
        appraise_sgx_quote((VECTORS / "tdx" / "dcapqvl_tdx_quote.bin").read_bytes(), now=at(QVL_NOW))
    assert info.value.reason == "sgx.version"


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        appraise_sgx_quote(QVL, now=datetime(2025, 7, 1))
