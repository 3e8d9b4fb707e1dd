"""`verify_evidence`: one entry point, one exception type, over every evidence kind."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from cloakgate_keys.attestation.errors import VerificationError
from cloakgate_keys.attestation.policy import NOT_EVALUATED
from cloakgate_keys.attestation.verify import MAX_EVIDENCE_BYTES, verify_evidence
from tests.keys.vectors import VECTORS, at

ANY = frozenset({NOT_EVALUATED, "UpToDate", "ConfigurationAndSWHardeningNeeded"})


def read(path: str) -> bytes:
    return (VECTORS / path).read_bytes()


# (kind, evidence, collateral, now, options, expected measurement)
CASES: list[tuple[str, str, str | None, str, dict[str, Any], str]] = [
    ("sgx", "sgx/dcapqvl_sgx_quote_v3.bin", "sgx/dcapqvl_sgx_quote_v3_collateral.json",
     "2025-07-01T00:00:00Z", {}, "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"),
    ("tdx", "tdx/dcapqvl_tdx_quote.bin", "tdx/dcapqvl_tdx_quote_collateral.json", "2025-07-01T00:00:00Z", {},
     "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"),
    ("tdx", "tdx/gotdxguest_quote_v5.dat", None, "2026-02-03T01:00:00Z", {},
     "7348651a34b2d2d3462822e3a750ec6110125f36757c78480bbfc69cc0d21fb001a1ced3ee19747dda8f750c3bc8f876"),
    ("snp", "snp/virtee_milan_report.hex", "snp/virtee_milan_vcek.der", "2024-01-01T00:00:00Z", {},
     "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f"),
    ("snp", "snp/trustee_milan_vlek_report.bin", "snp/trustee_milan_vlek.der", "2025-06-01T00:00:00Z", {},
     "8922ebbdd00ec2c541f36a6e7a82a8773a7accb451ed67bc94e740dbe92c93c4e8c9af857f5ceeb5a493df2a570d7bf0"),
    ("snp", "snp/trustee_azure_cvm_hcl_report.bin", "snp/trustee_azure_cvm_vcek_ask_ark.pem",
     "2024-01-01T00:00:00Z", {},
     "9ac48fcac8a2d88aeeff8d427ad4f2be0e3917c748a18bdf52cc317e7fe20308b459d5ef1a12e0c22944eb386d17c315"),
    ("maa", "maa/cppsdk_sharedwus_sgx_token.jwt", "maa/cppsdk_sharedwus_certs.json", "2022-06-01T00:00:00Z",
     {"issuer": "https://sharedwus.wus.attest.azure.net"},
     "292a1f4b519e46627eb2478a3d9851405653c5b4b0a6925de843834d9216850e"),
    ("ratls", "ratls/ccc_rats_tls_cert.pem", None, "2023-06-01T00:00:00Z", {},
     "38e1b40b8c68186f359c97ecb6a89965d9d8638f2df06fbe18e84d79a266c041"),
]


@pytest.mark.parametrize(("kind", "evidence", "collateral", "now", "options", "measurement"), CASES,
                         ids=[f"{c[0]}-{Path(c[1]).name}" for c in CASES])
def test_every_kind_verifies(
    kind: str, evidence: str, collateral: str | None, now: str, options: dict[str, Any], measurement: str
) -> None:
    claims = verify_evidence(
        kind, read(evidence), now=at(now), collateral=read(collateral) if collateral else None,
        certs_dir=VECTORS / "certs", allow_debug=True, accepted_tcb=ANY, **options,
    )
    assert claims.measurement == measurement
    json.dumps(claims.to_json())  # JSON-serializable as is


def test_snp_chain_can_come_entirely_from_the_collateral_bundle() -> None:
    claims = verify_evidence("snp", read("snp/cacisidecar_milan_report.bin"), now=at("2024-01-01T00:00:00Z"),
                             collateral=read("snp/cacisidecar_vcek_ask_ark.pem"), accepted_tcb=ANY)
    assert claims.extra["signing_key"] == "vcek"


def test_snp_without_ask_and_ark_fails() -> None:
    with pytest.raises(VerificationError) as info:
        verify_evidence("snp", read("snp/trustee_milan_vcek_report.bin"), now=at("2024-01-01T00:00:00Z"),
                        collateral=read("snp/trustee_milan_vcek.der"), accepted_tcb=ANY)
    assert info.value.reason == "snp.cert_chain"


@pytest.mark.parametrize(
    ("kind", "kwargs", "reason"),
    [
        ("maa", {"collateral": read("maa/cppsdk_sharedwus_certs.json")}, "maa.issuer_required"),
        ("maa", {"issuer": "https://sharedwus.wus.attest.azure.net"}, "maa.jwks_required"),
        ("maa", {"issuer": "https://x", "collateral": b"[]"}, "maa.jwks"),
        ("sgx", {"collateral": b"{}"}, "collateral.parse"),
        ("tpm", {}, "kind"),
        ("sgx", {"min_tcb": {}}, "options"),
        ("snp", {"certs_dir": VECTORS / "no-such-dir"}, "certs_dir"),
        ("sgx", {"collateral": b"x" * (MAX_EVIDENCE_BYTES + 1)}, "input.too_large"),
    ],
)
def test_usage_refusals(kind: str, kwargs: dict[str, Any], reason: str) -> None:
    evidence = {"maa": "maa/cppsdk_sharedwus_sgx_token.jwt", "snp": "snp/trustee_milan_vcek_report.bin"}
    data = read(evidence.get(kind, "sgx/dcapqvl_sgx_quote_v3.bin"))
    with pytest.raises(VerificationError) as info:
        verify_evidence(kind, data, now=at("2022-06-01T00:00:00Z"), **kwargs)
    assert info.value.reason == reason


GARBAGE = [
    b"",
    b"\x00" * 64,
    b"\x03\x00\x02\x00" + b"\xff" * 600,
    b"\x04\x00\x02\x00\x81\x00\x00\x00" + b"\x00" * 700,
    b"\x02\x00\x00\x00" + b"\x00" * 1180,
    b"HCLA" + b"\x01" * 3000,
    b"0" * 2368,
    b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n",
    b"\x30\x82\xff\xff\x00",
    b"eyJhbGciOiJSUzI1NiJ9.e30.AAAA",
    "é".encode(),
]


COLLATERAL = {"snp": "snp/cacisidecar_vcek_ask_ark.pem", "maa": "maa/cppsdk_sharedwus_certs.json"}


@pytest.mark.parametrize("kind", ["sgx", "tdx", "snp", "maa", "ratls"])
@pytest.mark.parametrize("data", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_raises_only_verification_error(kind: str, data: bytes) -> None:
    options = {"issuer": "https://sharedwus.wus.attest.azure.net"} if kind == "maa" else {}
    collateral = read(COLLATERAL[kind]) if kind in COLLATERAL else None
    with pytest.raises(VerificationError):
        verify_evidence(kind, data, now=at("2024-01-01T00:00:00Z"), collateral=collateral, allow_debug=True,
                        accepted_tcb=ANY, **options)


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        verify_evidence("sgx", read("sgx/dcapqvl_sgx_quote_v3.bin"), now=datetime(2025, 7, 1))
