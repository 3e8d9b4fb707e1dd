"""TDX quote v4/v5 verifier against shared/vectors/tdx (facts from PROVENANCE.md)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from cloakgate_keys.attestation import anchors, dcap
from cloakgate_keys.attestation.collateral import (
    IntelCollateral,
    check_revocation,
    extract_signed_json,
    parse_intel_collateral,
)
from cloakgate_keys.attestation.errors import VerificationError
from cloakgate_keys.attestation.policy import NOT_EVALUATED
from cloakgate_keys.attestation.tcb import TdxTcb, evaluate_tcb
from cloakgate_keys.attestation.tdx import appraise_tdx_quote, verify_tdx_quote
from tests.keys.vectors import VECTORS, at, lookup

TDX = VECTORS / "tdx"
ZERO48 = "00" * 48
GOTDX_NOW = "2023-07-01T01:00:00Z"
TRUSTEE_NOW = "2023-06-20T00:00:00Z"
QVL_NOW = "2025-07-01T00:00:00Z"


def quote(name: str) -> bytes:
    return (TDX / name).read_bytes()


QE_FACTS = {"qe.mrsigner": anchors.TD_QE_IDENTITY[0].hex(), "qe.isv_prod_id": 2}
MRSEAM_INTEL = (
    "2fd279c16164a93dd5bf373d834328d46008c2b693af9ebb865b08b2ced320c9a89b4869a9fab60fbe9d0c5a5363c656"
)

VECTOR_FACTS: list[tuple[str, str, bool, dict[str, Any]]] = [
    (
        "gotdxguest_quote_v4_spr_e4.dat",
        GOTDX_NOW,
        False,
        {
            "tee": "tdx",
            "quote_version": 4,
            "tee_tcb_svn": "03000400000000000000000000000000",
            "mr_seam": MRSEAM_INTEL,
            "mr_signer_seam": ZERO48,
            "seam_attributes": "0000000000000000",
            "td_attributes": "0000004000000000",
            "td_attribute_bits.pks": True,
            "td_attribute_bits.debug": False,
            "debug": False,
            "xfam": "e71a060000000000",
            "measurement": "6363b8043668a3ad953278e10389574d326c6749fb78aa81"
                "0ecd9336923db86f22fc00b8dcd404bc10d5e119d7215cbb",
            "mr_td": "6363b8043668a3ad953278e10389574d326c6749fb78aa81"
                "0ecd9336923db86f22fc00b8dcd404bc10d5e119d7215cbb",
            "mr_config_id": ZERO48,
            "mr_owner": ZERO48,
            "mr_owner_config": ZERO48,
            "rtmrs": [
                "2927da70461cd63266f43230cc1849c03ef25ebe490062a8"
                    "01d8fcc80af42976823adf08f833c1e50b51779c6593f32a",
                "2c700b8ba9b85783f8be9fb9443647bdc0bb3c50747f0629"
                    "7cc6538c25a5f589c4b56d035c59107c6bc5800db2cacb61",
                "8652f0caaba7e215ea442dc36a4499d8fec3362f3a0b2ca1"
                    "51cbe4b3e6466fe59c7368b3c2287fc7c3bf5c924eb4424e",
                ZERO48,
            ],
            "report_data": "6c62dec1b8191749a31dab490be532a35944dea47caef1f980863993d9899545"
            "eb7406a38d1eed313b987a467dacead6f0c87a6d766c66f6f29f8acb281f1113",
            "qe.isv_svn": 4,
            "pck.ca": "platform",
            "pck.fmspc": "50806f000000",
            "pck.pce_id": "0000",
            "pck.pce_svn": 11,
            "pck.cpusvn": "03030202020100020000000000000000",
            "pck.ppid": "089ddfdb9c0359c82a3bc7719239574e",
            "trailing_bytes": 39,
            "tcb_status": NOT_EVALUATED,
            **QE_FACTS,
        },
    ),
    (
        "gotdxguest_quote_v5.dat",
        "2026-02-03T01:00:00Z",
        False,
        {
            "quote_version": 5,
            "body_type": 3,
            "tee_tcb_svn": "0b010400000000000000000000000000",
            "tee_tcb_svn2": "0d010400000000000000000000000000",
            "mr_service_td": ZERO48,
            "td_attributes": "0000001000000000",
            "td_attribute_bits.sept_ve_disable": True,
            "debug": False,
            "measurement": "7348651a34b2d2d3462822e3a750ec6110125f36757c7848"
                "0bbfc69cc0d21fb001a1ced3ee19747dda8f750c3bc8f876",
            "report_data": "945eaacf5abc1f719d8666a942fda03d1edcb4490277396093dc5a5289ab9f1e"
            "094aed63060cd4a4933a4dd537ed1255c9c79ecb3ed82cd1b486233e31c25c3a",
            "pck.fmspc": "90c06f000000",
            "trailing_bytes": 0,
            **QE_FACTS,
        },
    ),
    (
        "dcapqvl_tdx_quote.bin",
        QVL_NOW,
        True,
        {
            "quote_version": 4,
            "tee_tcb_svn": "06010300000000000000000000000000",
            "mr_seam": "5b38e33a6487958b72c3c12a938eaa5e3fd4510c51aeeab58c7d5ecee41d7c43"
            "6489d6c8e4f92f160b7cad34207b00c1",
            "td_attributes": "0000001000000000",
            "debug": False,
            "xfam": "e702060000000000",
            "measurement": "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a"
                "3520c942a604a407de03ae6dc5f87f27428b2538873118b7",
            "rtmrs": [
                "44c0197b39157fdd7a4dcc44767f9d6b0bb3977c7a8e347b"
                    "8492f827fe9d9e5c48aca29b220b80b6a540cf994b9bc9c0",
                "0084452c01668329d4bc06acdf58a7205c26743304509973"
                    "949e5619bf81a6a7aea8c323c173019b3093d54e579e9378",
                "d833feef2cd945148aa38ead2c53e9b7f138190aaaebfc55"
                    "1dccd829fc207aa3ba80b70870d7330733642e01d48c3132",
                ZERO48,
            ],
            "report_data": "9a9d48e7f6799642d3d1b34e1e5e1742d4bb02dd6ddd551862c1211d35c304f9"
            "eca3efdbb481601c163cf52493d6e44aed55d51ec39b7e518fadb92c2b523f20",
            "qe.isv_svn": 6,
            "pck.fmspc": "b0c06f000000",
            "pck.pce_svn": 11,
            "trailing_bytes": 70,
            "tcb_status": "UpToDate",
            "advisory_ids": [],
            "tcb.platform_status": "UpToDate",
            "tcb.qe_status": "UpToDate",
            "tcb.module_status": "UpToDate",
            **QE_FACTS,
        },
    ),
    (
        "trustee_tdx_quote_4.dat",
        TRUSTEE_NOW,
        False,
        {
            "measurement": "705ee9381b8633a9fbe532b52345e8433343d2868959f578"
                "89d84ca377c395b689cac1599ccea1b7d420483a9ce5f031",
            "tee_tcb_svn": "03000500000000000000000000000000",
            "mr_seam": MRSEAM_INTEL,
            "td_attributes": "0100001000000000",
            "td_attribute_bits.debug": True,
            "td_attribute_bits.sept_ve_disable": True,
            "debug": True,
            "rtmrs.2": ZERO48,
            "rtmrs.3": ZERO48,
            "report_data": "7c71fe2c86eff65a7cf8dbc22b3275689fd0464a267baced1bf94fc1324656ae"
            "b755da3d44d098c0c87382f3a5f85b45c8a28fee1d3bdb38342bf96671501429",
            "pck.fmspc": "50806f000000",
            "pck.pce_svn": 11,
            "pck.tcb_components": [5, 5, 13, 2, 3, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0],
            "pck.platform_instance_id": "021ac64d355ba904e2d5948d228d5482",
            "qe.isv_svn": 4,
            "trailing_bytes": 0,
            **QE_FACTS,
        },
    ),
]


def _collateral(name: str, with_collateral: bool) -> IntelCollateral | None:
    if not with_collateral:
        return None
    return parse_intel_collateral((TDX / name.replace(".bin", "_collateral.json")).read_bytes())


@pytest.mark.parametrize(
    ("name", "now", "with_collateral", "facts"), VECTOR_FACTS, ids=[v[0] for v in VECTOR_FACTS]
)
def test_vector_yields_provenance_facts(
    name: str, now: str, with_collateral: bool, facts: dict[str, Any]
) -> None:
    claims = appraise_tdx_quote(quote(name), now=at(now), collateral=_collateral(name, with_collateral))
    doc = claims.to_json()
    assert {path: lookup(doc, path) for path in facts} == facts


def test_trustee_quote_agrees_with_trustee_expected_claims() -> None:
    expected = json.loads((TDX / "trustee_tdx_quote_4_expected_claims.json").read_text())
    body, header = expected["quote"]["body"], expected["quote"]["header"]
    claims = appraise_tdx_quote(quote("trustee_tdx_quote_4.dat"), now=at(TRUSTEE_NOW)).to_json()
    ours = {
        "mr_config_id": claims["mr_config_id"],
        "mr_owner": claims["mr_owner"],
        "mr_owner_config": claims["mr_owner_config"],
        "mr_seam": claims["mr_seam"],
        "mr_td": claims["mr_td"],
        "mrsigner_seam": claims["mr_signer_seam"],
        "report_data": claims["report_data"],
        **{f"rtmr_{i}": rtmr for i, rtmr in enumerate(claims["rtmrs"])},
        "seam_attributes": claims["seam_attributes"],
        "tcb_svn": claims["tee_tcb_svn"],
        "td_attributes": claims["td_attributes"],
        "xfam": claims["xfam"],
    }
    assert ours == body
    assert claims["user_data"] == header["user_data"]
    bits = claims["td_attribute_bits"]
    assert {
        "debug": bits["debug"],
        "key_locker": bits["kl"],
        "perfmon": bits["perfmon"],
        "protection_keys": bits["pks"],
        "septve_disable": bits["sept_ve_disable"],
    } == expected["td_attributes"]


def test_qvl_tdx_quote_passes_default_policy() -> None:
    claims = verify_tdx_quote(quote("dcapqvl_tdx_quote.bin"), now=at(QVL_NOW),
                              collateral=_collateral("dcapqvl_tdx_quote.bin", True))
    assert (claims.tcb_status, claims.debug) == ("UpToDate", False)


def test_debug_td_is_refused() -> None:
    with pytest.raises(VerificationError) as info:
        verify_tdx_quote(quote("trustee_tdx_quote_4.dat"), now=at(TRUSTEE_NOW))
    assert info.value.reason == "debug"


# --- go-tdx-guest 2023 PCS collateral (raw responses; no issuer chain shipped) ------------------


def _verified(name: str, now: str) -> tuple[dcap.VerifiedQuote, TdxTcb]:
    raw = quote(name)
    header = dcap.QuoteHeader.parse(raw, kind="tdx")
    verified = dcap.verify_quote(raw, header, kind="tdx", signed_len=632, qe_identity=anchors.TD_QE_IDENTITY,
                                 now=at(now))
    return verified, TdxTcb(tee_tcb_svn=raw[48:64], mr_signer_seam=raw[112:160], seam_attributes=raw[160:168])


def _gotdx_signed(name: str, key: str) -> dict[str, Any]:
    """The raw PCS response's signed value, checked with the TCB Signing key (same key as the one
    in the 2025 dcap-qvl collateral chain, whose certificate is only valid from 2025)."""
    raw, signature = extract_signed_json((TDX / name).read_bytes(), key)
    chain = json.loads((TDX / "dcapqvl_tdx_quote_collateral.json").read_text())["tcb_info_issuer_chain"]
    signing_key = x509.load_pem_x509_certificates(chain.encode())[0].public_key()
    assert isinstance(signing_key, ec.EllipticCurvePublicKey)
    assert dcap.verify_raw_ecdsa_p256(signing_key, signature, raw)
    assert not dcap.verify_raw_ecdsa_p256(signing_key, signature, raw.replace(b"UpToDate", b"OutOfDate", 1))
    return dict(json.loads(raw))


def test_trustee_quote_with_gotdx_collateral_is_up_to_date_but_debug() -> None:
    verified, td = _verified("trustee_tdx_quote_4.dat", TRUSTEE_NOW)
    check_revocation(
        verified.pck,
        pck_crl=x509.load_der_x509_crl((TDX / "gotdxguest_pckcrl.der").read_bytes()),
        root_crl=x509.load_der_x509_crl((TDX / "gotdxguest_rootcrl.der").read_bytes()),
        root=anchors.intel_sgx_root(),
        now=at(TRUSTEE_NOW),
    )
    result = evaluate_tcb(
        _gotdx_signed("gotdxguest_tcbinfo_response.json", "tcbInfo"),
        _gotdx_signed("gotdxguest_qeidentity_response.json", "enclaveIdentity"),
        pck=verified.pck,
        qe_report=verified.signature_data.qe_report,
        td=td,
    )
    assert (result.status, result.platform_status, result.qe_status, result.advisory_ids) == (
        "UpToDate", "UpToDate", "UpToDate", ()
    )
    assert (result.tcb_date, result.evaluation_data_number) == ("2023-02-15T00:00:00Z", 15)


def test_gotdx_quote_matches_no_level_of_2023_collateral() -> None:
    verified, td = _verified("gotdxguest_quote_v4_spr_e4.dat", GOTDX_NOW)
    with pytest.raises(VerificationError) as info:
        evaluate_tcb(
            _gotdx_signed("gotdxguest_tcbinfo_response.json", "tcbInfo"),
            _gotdx_signed("gotdxguest_qeidentity_response.json", "enclaveIdentity"),
            pck=verified.pck,
            qe_report=verified.signature_data.qe_report,
            td=td,
        )
    assert info.value.reason == "tcb.no_match"


def test_gotdx_crls_are_outside_their_window_a_year_later() -> None:
    verified, _ = _verified("trustee_tdx_quote_4.dat", TRUSTEE_NOW)
    with pytest.raises(VerificationError) as info:
        check_revocation(
            verified.pck,
            pck_crl=x509.load_der_x509_crl((TDX / "gotdxguest_pckcrl.der").read_bytes()),
            root_crl=x509.load_der_x509_crl((TDX / "gotdxguest_rootcrl.der").read_bytes()),
            root=anchors.intel_sgx_root(),
            now=at("2024-06-20T00:00:00Z"),
        )
    assert info.value.reason == "collateral.expired"


# --- time -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "now", "with_collateral", "reason"),
    [
        ("gotdxguest_quote_v4_spr_e4.dat", "2053-07-01T00:00:00Z", False, "tdx.pck_chain"),  # source test
        ("gotdxguest_quote_v4_spr_e4.dat", "2022-09-20T00:00:00Z", False, "tdx.pck_chain"),
        ("gotdxguest_quote_v5.dat", "2026-01-27T00:00:00Z", False, "tdx.pck_chain"),
        ("trustee_tdx_quote_4.dat", "2030-02-08T00:00:00Z", False, "tdx.pck_chain"),
        ("dcapqvl_tdx_quote.bin", "2025-06-19T10:00:00Z", True, "collateral.expired"),
        ("dcapqvl_tdx_quote.bin", "2025-07-19T10:30:00Z", True, "collateral.expired"),
    ],
)
def test_wrong_now_fails(name: str, now: str, with_collateral: bool, reason: str) -> None:
    with pytest.raises(VerificationError) as info:
        appraise_tdx_quote(quote(name), now=at(now), collateral=_collateral(name, with_collateral))
    assert info.value.reason == reason


# --- tampering --------------------------------------------------------------------------------

GOTDX = quote("gotdxguest_quote_v4_spr_e4.dat")
V5 = quote("gotdxguest_quote_v5.dat")
_V5_SIG = 706  # signature data of the v5 quote (54 + 648 + 4)
_V5_PEMS = [i for i in range(len(V5)) if V5.startswith(b"-----BEGIN CERTIFICATE-----", i)]
FLIPS = [
    # go-tdx-guest's own negative offsets
    ("v4", 0x00, "header.version", "tdx.body_type"),  # 4 -> 5: read as a v5 quote
    ("v4", 0x1E, "header.user_data", "tdx.quote_signature"),
    ("v4", 0x3C, "body.tee_tcb_svn/mrseam", "tdx.quote_signature"),
    ("v4", 0x278, "signature_data_len", "tdx.parse"),
    ("v4", 0xB77, "pck.leaf", "tdx.pck_chain"),
    ("v4", 0xF5F, "pck.intermediate", "tdx.pck_chain"),
    ("v4", 0x1329, "pck.root", "tdx.pck_chain"),
    # structure of the v5 quote
    ("v5", 4, "header.tee_type", "tdx.version"),
    ("v5", 8, "header.reserved", "tdx.parse"),
    ("v5", 48, "v5.body_type", "tdx.body_type"),
    ("v5", 50, "v5.body_size", "tdx.body_type"),
    ("v5", 54 + 120, "body.td_attributes", "tdx.quote_signature"),
    ("v5", 54 + 136, "body.mrtd", "tdx.quote_signature"),
    ("v5", 54 + 376, "body.rtmr1", "tdx.quote_signature"),
    ("v5", 54 + 520, "body.report_data", "tdx.quote_signature"),
    ("v5", 54 + 600, "body.mr_servicetd", "tdx.quote_signature"),
    ("v5", 701, "body.last_byte", "tdx.quote_signature"),
    ("v5", _V5_SIG + 3, "sig.quote_signature", "tdx.quote_signature"),
    ("v5", _V5_SIG + 100, "sig.attestation_key", "tdx.qe_binding"),
    ("v5", _V5_SIG + 128, "sig.cert_data_type", "tdx.parse"),
    ("v5", _V5_SIG + 131, "sig.cert_data_size", "tdx.parse"),
    ("v5", _V5_SIG + 134 + 64, "sig.qe_report.mrenclave", "tdx.qe_signature"),
    ("v5", _V5_SIG + 134 + 384 + 9, "sig.qe_report_signature", "tdx.qe_signature"),
    ("v5", _V5_SIG + 134 + 448 + 2 + 7, "sig.qe_auth_data", "tdx.qe_binding"),
    ("v5", _V5_SIG + 134 + 448 + 2 + 32, "sig.inner_cert_type", "tdx.parse"),
    ("v5", _V5_PEMS[0] + 300, "pck.leaf", "tdx.pck_chain"),
    ("v5", _V5_PEMS[1] + 300, "pck.intermediate", "tdx.pck_chain"),
    ("v5", _V5_PEMS[2] + 300, "pck.root", "tdx.pck_chain"),
]


@pytest.mark.parametrize(("which", "offset", "where", "reason"), FLIPS, ids=[f"{f[0]}-{f[2]}" for f in FLIPS])
def test_flipped_byte_fails(which: str, offset: int, where: str, reason: str) -> None:
    raw, now = (GOTDX, GOTDX_NOW) if which == "v4" else (V5, "2026-02-03T01:00:00Z")
    tampered = bytearray(raw)
    tampered[offset] ^= 0x01
    with pytest.raises(VerificationError) as info:
        appraise_tdx_quote(bytes(tampered), now=at(now))
    assert info.value.reason == reason


def test_trailing_bytes_are_unsigned_and_ignored() -> None:
    assert GOTDX.endswith(b"\nextra bytes(only for testing purpose)\n")
    tampered = bytearray(GOTDX)
    tampered[-5] ^= 0x01
    assert appraise_tdx_quote(bytes(tampered), now=at(GOTDX_NOW)).extra["trailing_bytes"] == 39


def test_sgx_quote_is_not_a_td_quote() -> None:
    with pytest.raises(VerificationError) as info:
        appraise_tdx_quote((VECTORS / "sgx" / "dcapqvl_sgx_quote_v3.bin").read_bytes(), now=at(QVL_NOW))
    assert info.value.reason == "tdx.version"


def test_sgx_collateral_does_not_apply_to_td_quote() -> None:
    sgx = parse_intel_collateral((VECTORS / "sgx" / "dcapqvl_sgx_quote_v3_collateral.json").read_bytes())
    with pytest.raises(VerificationError) as info:
        appraise_tdx_quote(quote("dcapqvl_tdx_quote.bin"), now=at(QVL_NOW), collateral=sgx)
    assert info.value.reason in {"collateral.crl", "collateral.mismatch"}
