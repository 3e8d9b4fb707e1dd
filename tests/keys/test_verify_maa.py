"""Azure Attestation token verifier against shared/vectors/maa (facts from PROVENANCE.md)."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from cloakgate_keys.attestation.errors import VerificationError
from cloakgate_keys.attestation.maa import appraise_maa_token, claims_from_maa_payload, verify_maa_token
from cloakgate_keys.attestation.policy import NOT_EVALUATED
from tests.keys.vectors import VECTORS, at, lookup

MAA = VECTORS / "maa"
ISSUER = "https://sharedwus.wus.attest.azure.net"
NOW = "2022-06-01T00:00:00Z"
TOKEN = (MAA / "cppsdk_sharedwus_sgx_token.jwt").read_text().strip()
JWKS: dict[str, Any] = json.loads((MAA / "cppsdk_sharedwus_certs.json").read_text())


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_sgx_token_yields_provenance_facts() -> None:
    claims = appraise_maa_token(TOKEN, jwks=JWKS, issuer=ISSUER, now=at(NOW))
    assert claims.to_json() | {"token_claims": None} == {
        "tee": "maa",
        "attestation_type": "sgx",
        "tee_type": "sgx",
        "issuer": ISSUER,
        "iat": 1654037276,
        "exp": 1654066076,
        "debug": True,
        "measurement": "292a1f4b519e46627eb2478a3d9851405653c5b4b0a6925de843834d9216850e",
        "signer": "4aea5f9a0ed04b11f889aadfe6a1d376213a29a95a85ce7337ae6f7fece6610c",
        "product_id": 1,
        "svn": 1,
        "report_data": "28542e44fe7e73f6610f6b31ae7576925f09ccdbb4c5646583ecc1561337a8ff" + "00" * 32,
        "policy_hash": "bROrN897ZfWmWY2V0FLUlu3uwk5xatGnKYHn3zBbSlw",
        "tcb_status": NOT_EVALUATED,
        "token_claims": None,
    }
    token_claims = claims.extra["token_claims"]
    assert token_claims["x-ms-ver"] == "1.0" and token_claims["is-debuggable"] is True
    assert token_claims["x-ms-sgx-collateral"]["quotehash"] == (
        "4f9aa62ee2ca513a31f8a427b16723b3b918c927b8d02e9e215da2bdbc98d8b1"
    )


def test_pinned_issuer_from_openid_configuration() -> None:
    config = json.loads((MAA / "cppsdk_sharedwus_openid_configuration.json").read_text())
    assert jwt.get_unverified_header(TOKEN)["jku"] == config["jwks_uri"]  # never followed, but consistent
    assert appraise_maa_token(TOKEN, jwks=JWKS, issuer=config["issuer"] + "/", now=at(NOW)).tee == "maa"


def test_only_the_matching_kid_verifies() -> None:
    kids = [k["kid"] for k in JWKS["keys"]]
    assert kids.count(HEADER["kid"]) == 1
    for kid in kids:  # each JWKS entry in turn, relabelled with the token's kid
        other = {"keys": [k | {"kid": HEADER["kid"]} for k in JWKS["keys"] if k["kid"] == kid]}
        if kid == HEADER["kid"]:
            appraise_maa_token(TOKEN, jwks=other, issuer=ISSUER, now=at(NOW))
        else:  # the other two JWKS entries carry different keys
            with pytest.raises(VerificationError) as info:
                appraise_maa_token(TOKEN, jwks=other, issuer=ISSUER, now=at(NOW))
            assert info.value.reason == "maa.signature"


def test_debug_token_is_refused_by_default_and_accepted_explicitly() -> None:
    with pytest.raises(VerificationError) as info:
        verify_maa_token(TOKEN, jwks=JWKS, issuer=ISSUER, now=at(NOW))
    assert info.value.reason == "debug"
    with pytest.raises(VerificationError) as info:
        verify_maa_token(TOKEN, jwks=JWKS, issuer=ISSUER, now=at(NOW), allow_debug=True)
    assert info.value.reason == "tcb.unevaluated"
    claims = verify_maa_token(TOKEN, jwks=JWKS, issuer=ISSUER, now=at(NOW), allow_debug=True,
                              accepted_tcb=frozenset({NOT_EVALUATED}))
    assert claims.debug


def _forged(header: dict[str, Any] | None = None, payload: dict[str, Any] | None = None) -> str:
    head, body, sig = TOKEN.split(".")
    if header is not None:
        head = b64url(json.dumps(header).encode())
    if payload is not None:
        body = b64url(json.dumps(payload).encode())
    return f"{head}.{body}.{sig}"


HEADER = jwt.get_unverified_header(TOKEN)
PAYLOAD = jwt.decode(TOKEN, options={"verify_signature": False})


@pytest.mark.parametrize(
    ("token", "kwargs", "reason"),
    [
        (TOKEN, {"now": at("2022-06-01T07:00:00Z")}, "maa.expired"),
        (TOKEN, {"now": at("2022-05-31T22:40:00Z")}, "maa.not_yet_valid"),
        (TOKEN, {"now": at("2022-06-01T06:50:00Z"), "leeway": timedelta(0)}, "maa.expired"),
        (TOKEN, {"issuer": "https://sharedeus.eus.attest.azure.net"}, "maa.issuer"),
        (TOKEN, {"jwks": {"keys": [k for k in JWKS["keys"] if k["kid"] != HEADER["kid"]]}}, "maa.kid"),
        (TOKEN, {"jwks": {"keys": JWKS["keys"] + JWKS["keys"][:1]}}, "maa.kid"),  # ambiguous kid
        (_forged(header=HEADER | {"alg": "HS256"}), {}, "maa.alg"),
        (_forged(header=HEADER | {"alg": "none"}), {}, "maa.alg"),
        (_forged(header=HEADER | {"kid": "unknown"}), {}, "maa.kid"),
        (_forged(payload=PAYLOAD | {"x-ms-sgx-is-debuggable": False}), {}, "maa.signature"),
        (_forged(payload=PAYLOAD | {"exp": PAYLOAD["exp"] + 3600}), {}, "maa.signature"),
        (TOKEN + "x", {}, "maa.signature"),
        (TOKEN.replace(".", "..", 1), {}, "maa.parse"),
        ("not a token", {}, "maa.parse"),
    ],
)
def test_token_refusals(token: str, kwargs: dict[str, Any], reason: str) -> None:
    args: dict[str, Any] = {"jwks": JWKS, "issuer": ISSUER, "now": at(NOW)} | kwargs
    with pytest.raises(VerificationError) as info:
        appraise_maa_token(token, **args)
    assert info.value.reason == reason


HEAD, BODY, SIG = (len(part) for part in TOKEN.split("."))


@pytest.mark.parametrize(
    "offset",
    [0, 10, HEAD - 2, HEAD + 1, HEAD + 100, HEAD + BODY // 2, HEAD + BODY - 1, HEAD + BODY + 2,
     len(TOKEN) - 5],
)
def test_flipped_character_fails(offset: int) -> None:
    chars = list(TOKEN)
    chars[offset] = "A" if chars[offset] != "A" else "B"
    with pytest.raises(VerificationError) as info:
        appraise_maa_token("".join(chars), jwks=JWKS, issuer=ISSUER, now=at(NOW))
    assert info.value.reason.startswith("maa.")


# --- claims-only tokens (no JWKS published): extraction only ---------------------------------


def payload(name: str) -> dict[str, Any]:
    return dict(jwt.decode((MAA / name).read_text().strip(), options={"verify_signature": False}))


CLAIMS_ONLY: list[tuple[str, dict[str, Any]]] = [
    (
        "thomvanl_sharedweu_cvm_token.jwt",
        {
            "attestation_type": "azurevm",
            "tee_type": "sevsnpvm",
            "issuer": "https://sharedweu.weu.attest.azure.net",
            "iat": 1671836418,
            "exp": 1671865218,
            "compliance_status": "azure-compliant-cvm",
            "debug": False,
            "measurement": "ad6de16ac59ee52351c6038df58d1be5aeaf41cd0f7c81b2279ecca0df6ef43a"
            "2b69d663ad6973d6dbb9db0ffd7a9023",
            "reported_tcb.microcode": 115,
            "token_claims.secureboot": True,
            "token_claims.x-ms-runtime.keys.0.kid": "TpmEphemeralEncryptionKey",
            "token_claims.x-ms-runtime.keys.0.kty": "RSA",
            "token_claims.x-ms-runtime.keys.0.key_ops": ["encrypt"],
            "token_claims.x-ms-isolation-tee.x-ms-runtime.keys.0.kid": "HCLAkPub",
        },
    ),
    (
        "midnight_azurecvm_sevsnp_token.jwt",
        {
            "attestation_type": "azurevm",
            "issuer": "https://sharedeus2.eus2.attest.azure.net",
            "iat": 1765826648,
            "exp": 1765855448,
            "compliance_status": "azure-compliant-cvm",
            "debug": False,
            "measurement": "6a063be9dd79f6371c842e480f8dc3b5c725961344e57130e88c5adf49e8f7f6"
            "c79b75a5eb77fc769959f4aeb2f9401e",
            "reported_tcb": {"bootloader": 4, "tee": 0, "snp": 24, "microcode": 219},
            "vmpl": 0,
            "image_id": "02" + "00" * 15,
            "family_id": "02212" + "0" * 27,
            "report_data": "a62ad2715a9b95b24811cc64ceba2b5a13341160da8c446100142f3341eb7e45" + "00" * 32,
            "token_claims.x-ms-azurevm-attestation-protocol-ver": "3.0",
            "token_claims.x-ms-azurevm-vmid": "ABD9EA99-D837-4F68-AD3E-C87C88006AFA",
            "token_claims.x-ms-runtime.client-payload.nonce": "bWlkbmlnaHQtc3Jz",
            "token_claims.x-ms-runtime.keys.0.kid": "TpmEphemeralEncryptionKey",
        },
    ),
    (
        "azsamples_sevsnp_aci_token.jwt",
        {
            "attestation_type": "sevsnpvm",
            "tee_type": "sevsnpvm",
            "issuer": "https://sharedweu.weu.test.attest.azure.net",
            "iat": 1744085700,
            "exp": 1744114500,
            "debug": False,
            "host_data": "73973b78d70cc68353426de188db5dfc57e5b766e399935fb73a61127ea26d20",
            "measurement": "02c3b0d5bf1d256fa4e3b5deefc07b55ff2f7029085ed350f60959140a1a51f1"
            "310753ba5ab2c03a0536b1c0c193af47",
            "reported_tcb": {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115},
            "svn": 2,
            "vmpl": 0,
        },
    ),
]


@pytest.mark.parametrize(("name", "facts"), CLAIMS_ONLY, ids=[c[0] for c in CLAIMS_ONLY])
def test_claims_only_tokens_normalize(name: str, facts: dict[str, Any]) -> None:
    doc = claims_from_maa_payload(payload(name)).to_json()
    assert {path: lookup(doc, path) for path in facts} == facts


@pytest.mark.parametrize("name", [c[0] for c in CLAIMS_ONLY])
def test_claims_only_tokens_cannot_be_verified_offline(name: str) -> None:
    token = (MAA / name).read_text().strip()
    issuer = payload(name)["iss"]
    with pytest.raises(VerificationError) as info:
        appraise_maa_token(token, jwks=JWKS, issuer=issuer, now=at("2025-01-01T00:00:00Z"),
                           allow_test_instance=True)
    assert info.value.reason == "maa.kid"


def _self_signed(claims: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A token and JWKS (n/e form) made here with a throw-away key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = key.public_key().public_numbers()
    jwk = {"kid": "k1", "kty": "RSA", "n": b64url(numbers.n.to_bytes(256, "big")),
           "e": b64url(numbers.e.to_bytes(3, "big"))}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"}), {"keys": [jwk]}


def test_test_instance_issuer_is_refused_unless_allowed() -> None:
    test_issuer = "https://sharedweu.weu.test.attest.azure.net"
    token, jwks = _self_signed(payload("azsamples_sevsnp_aci_token.jwt"))
    now = at("2025-04-08T05:00:00Z")
    with pytest.raises(VerificationError) as info:
        appraise_maa_token(token, jwks=jwks, issuer=test_issuer, now=now)
    assert info.value.reason == "maa.test_instance"
    claims = appraise_maa_token(token, jwks=jwks, issuer=test_issuer, now=now, allow_test_instance=True)
    assert claims.extra["host_data"] == "73973b78d70cc68353426de188db5dfc57e5b766e399935fb73a61127ea26d20"


def test_self_signed_cvm_token_round_trip_and_policy() -> None:
    token, jwks = _self_signed(payload("thomvanl_sharedweu_cvm_token.jwt"))
    now = at("2022-12-24T00:00:00Z")
    claims = verify_maa_token(token, jwks=jwks, issuer="https://sharedweu.weu.attest.azure.net", now=now,
                              accepted_tcb=frozenset({NOT_EVALUATED}))
    assert (claims.debug, claims.extra["compliance_status"]) == (False, "azure-compliant-cvm")


def test_unknown_attestation_type_is_refused() -> None:
    with pytest.raises(VerificationError) as info:
        claims_from_maa_payload({"x-ms-attestation-type": "tpm"})
    assert info.value.reason == "maa.attestation_type"


def test_missing_debug_claim_counts_as_debuggable() -> None:
    claims = claims_from_maa_payload({"x-ms-attestation-type": "sevsnpvm"})
    assert claims.debug
