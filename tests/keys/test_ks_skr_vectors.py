"""The Azure Secure Key Release vectors (PROVENANCE.md, maa/thomvanl_*): our release-policy engine
evaluates the real SKR policy like Key Vault did, and the Key Vault release JWS verifies."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from cloakgate_keys.service.policy import PolicyError, parse_policy

MAA = Path(__file__).resolve().parents[2].parent / "shared" / "vectors" / "maa"
NOW = datetime(2022, 12, 24, tzinfo=UTC)


def payload(jwt: str) -> dict:
    part = jwt.strip().split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def b64u(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def test_thomvanl_release_policy_allows_the_cvm_token_and_denies_the_sgx_token():
    policy = parse_policy((MAA / "thomvanl_cvm_release_policy.json").read_text())
    cvm = payload((MAA / "thomvanl_sharedweu_cvm_token.jwt").read_text())
    sgx = payload((MAA / "cppsdk_sharedwus_sgx_token.jwt").read_text())
    assert policy.allows(cvm)
    assert not policy.allows(sgx)
    # the authority matters: the same claims from another issuer are denied
    assert not policy.allows({**cvm, "iss": "https://sharedwus.wus.attest.azure.net"})
    assert not policy.allows({k: v for k, v in cvm.items() if k != "iss"})


def test_policy_embedded_in_the_release_response_is_the_same():
    resp = json.loads((MAA / "thomvanl_akv_skr_release_response.json").read_text())
    body = payload(resp["value"])
    embedded = json.loads(b64u(body["response"]["key"]["release_policy"]["data"]))
    assert embedded == json.loads((MAA / "thomvanl_cvm_release_policy.json").read_text())


def test_authority_must_be_https():
    with pytest.raises(PolicyError):
        parse_policy({"anyOf": [{"authority": "http://x", "allOf": [{"claim": "a", "equals": 1}]}]})


def test_key_vault_release_jws_and_its_chain_verify():
    resp = json.loads((MAA / "thomvanl_akv_skr_release_response.json").read_text())
    header_b64, payload_b64, sig_b64 = resp["value"].split(".")
    header = json.loads(b64u(header_b64))
    assert header["alg"] == "RS256"
    chain = [x509.load_der_x509_certificate(base64.b64decode(c)) for c in header["x5c"]]
    assert "vault.azure.net" in chain[0].subject.rfc4514_string()
    assert chain[0].not_valid_before_utc <= NOW <= chain[0].not_valid_after_utc
    signed = f"{header_b64}.{payload_b64}".encode()
    sig = b64u(sig_b64)
    chain[0].public_key().verify(sig, signed, padding.PKCS1v15(), hashes.SHA256())
    for child, parent in zip(chain, chain[1:]):
        child.verify_directly_issued_by(parent)
    tampered = bytearray(signed)
    tampered[-5] ^= 1
    with pytest.raises(InvalidSignature):
        chain[0].public_key().verify(sig, bytes(tampered), padding.PKCS1v15(), hashes.SHA256())
