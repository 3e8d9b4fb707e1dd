"""Microsoft Azure Attestation (MAA) tokens: RS256 JWS verified against the pinned instance's
JWKS, then normalized into `Claims` (ATTESTATION.md §8).

The signing key is selected by `kid` from a JWKS the caller fetched from the pinned instance
(`jku` in the token is never followed); MAA JWKS entries carry the key only in `x5c[0]`.
Time is injected; `iss` must equal the pinned instance (trailing slash ignored).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Set
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from cloakgate_keys.attestation.claims import Claims
from cloakgate_keys.attestation.errors import VerificationError
from cloakgate_keys.attestation.policy import NOT_EVALUATED, enforce, require_aware

DEFAULT_LEEWAY = timedelta(seconds=60)
MAX_TOKEN_LEN = 64 * 1024
_TEST_INSTANCE_SUFFIX = ".test.attest.azure.net"
_AZUREVM_DEBUG_CLAIMS = (
    "x-ms-azurevm-bootdebug-enabled",
    "x-ms-azurevm-kerneldebug-enabled",
    "x-ms-azurevm-hypervisordebug-enabled",
)


def _b64url(segment: str) -> bytes:
    if not segment or "=" in segment:
        raise ValueError("bad base64url segment")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _jwks_key(jwks: Mapping[str, Any], kid: str) -> rsa.RSAPublicKey:
    matches = [k for k in jwks.get("keys", []) if isinstance(k, Mapping) and k.get("kid") == kid]
    if len(matches) != 1:
        raise VerificationError("maa.kid")
    entry = matches[0]
    try:
        if entry.get("x5c"):
            cert = base64.b64decode(entry["x5c"][0], validate=True)
            key = x509.load_der_x509_certificate(cert).public_key()
        else:
            n, e = (int.from_bytes(_b64url(entry[p]), "big") for p in ("n", "e"))
            key = rsa.RSAPublicNumbers(e, n).public_key()
    except (ValueError, KeyError, TypeError, IndexError, binascii.Error):
        raise VerificationError("maa.jwks") from None
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < 2048:
        raise VerificationError("maa.jwks")
    return key


def _normalize_issuer(url: str) -> str:
    return url.rstrip("/")


def verify_maa_signature(
    token: str | bytes,
    *,
    jwks: Mapping[str, Any],
    issuer: str,
    now: datetime,
    leeway: timedelta = DEFAULT_LEEWAY,
    allow_test_instance: bool = False,
) -> dict[str, Any]:
    """Verify signature, issuer and validity window; return the token's claims set."""
    require_aware(now)
    text = token.decode("ascii", "replace") if isinstance(token, bytes) else token
    text = text.strip()
    if len(text) > MAX_TOKEN_LEN or text.count(".") != 2:
        raise VerificationError("maa.parse")
    head_b64, body_b64, sig_b64 = text.split(".")
    try:
        header = json.loads(_b64url(head_b64))
        payload = json.loads(_b64url(body_b64))
        signature = _b64url(sig_b64)
    except (ValueError, binascii.Error):
        raise VerificationError("maa.parse") from None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise VerificationError("maa.parse")
    if header.get("alg") != "RS256" or not isinstance(header.get("kid"), str) or "crit" in header:
        raise VerificationError("maa.alg")
    key = _jwks_key(jwks, header["kid"])
    try:
        key.verify(signature, f"{head_b64}.{body_b64}".encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise VerificationError("maa.signature") from None
    iss = payload.get("iss")
    if not isinstance(iss, str) or _normalize_issuer(iss) != _normalize_issuer(issuer):
        raise VerificationError("maa.issuer")
    host = urlsplit(iss).hostname or ""
    if host.endswith(_TEST_INSTANCE_SUFFIX) and not allow_test_instance:
        raise VerificationError("maa.test_instance")
    nbf, exp = payload.get("nbf", payload.get("iat")), payload.get("exp")
    if not isinstance(nbf, int) or not isinstance(exp, int):
        raise VerificationError("maa.parse")
    if now + leeway < datetime.fromtimestamp(nbf, UTC):
        raise VerificationError("maa.not_yet_valid")
    if now - leeway >= datetime.fromtimestamp(exp, UTC):
        raise VerificationError("maa.expired")
    return payload


def _hex(value: Any) -> bytes:
    if not isinstance(value, str):
        return b""
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise VerificationError("maa.claims") from None


def _snp_claims(tee: Mapping[str, Any]) -> dict[str, Any]:
    def get(name: str) -> Any:
        return tee.get(f"x-ms-sevsnpvm-{name}")

    return {
        "measurement": str(get("launchmeasurement") or ""),
        "report_data": _hex(get("reportdata")),
        "debug": get("is-debuggable") is not False,  # absent -> treated as debuggable
        "svn": get("guestsvn"),
        "snp": {
            "host_data": get("hostdata"),
            "id_key_digest": get("idkeydigest"),
            "vmpl": get("vmpl"),
            "family_id": get("familyId"),
            "image_id": get("imageId"),
            "reported_tcb": {
                "bootloader": get("bootloader-svn"),
                "tee": get("tee-svn"),
                "snp": get("snpfw-svn"),
                "microcode": get("microcode-svn"),
            },
            "compliance_status": tee.get("x-ms-compliance-status"),
        },
    }


def claims_from_maa_payload(payload: Mapping[str, Any]) -> Claims:
    """Normalize an MAA claims set. Pure mapping: it verifies nothing (see `verify_maa_token`).

    Supported attestation types: "sgx", "sevsnpvm" (flat claims) and "azurevm" whose
    `x-ms-isolation-tee` is "sevsnpvm". The whole claims set stays available as
    `extra["token_claims"]` for release policies with dotted claim paths.
    """
    kind = payload.get("x-ms-attestation-type")
    common: dict[str, Any] = {
        "attestation_type": kind,
        "issuer": payload.get("iss"),
        "iat": payload.get("iat"),
        "exp": payload.get("exp"),
        "policy_hash": payload.get("x-ms-policy-hash"),
        "token_claims": dict(payload),
    }
    if kind == "sgx":
        debug = payload.get("x-ms-sgx-is-debuggable", payload.get("is-debuggable"))
        return Claims(
            tee="maa",
            measurement=str(payload.get("x-ms-sgx-mrenclave") or ""),
            report_data=_hex(payload.get("x-ms-sgx-report-data")),
            debug=debug is not False,
            tcb_status=NOT_EVALUATED,
            signer=payload.get("x-ms-sgx-mrsigner"),
            product_id=payload.get("x-ms-sgx-product-id"),
            svn=payload.get("x-ms-sgx-svn"),
            extra={**common, "tee_type": "sgx"},
        )
    if kind == "sevsnpvm":
        tee: Mapping[str, Any] = payload
        vm_debug = False
    elif kind == "azurevm" and isinstance(payload.get("x-ms-isolation-tee"), Mapping):
        tee = payload["x-ms-isolation-tee"]
        vm_debug = any(payload.get(name) is not False for name in _AZUREVM_DEBUG_CLAIMS)
        if tee.get("x-ms-attestation-type") != "sevsnpvm":
            raise VerificationError("maa.attestation_type")
    else:
        raise VerificationError("maa.attestation_type")
    snp = _snp_claims(tee)
    return Claims(
        tee="maa",
        measurement=snp["measurement"],
        report_data=snp["report_data"],
        debug=snp["debug"] or vm_debug,
        tcb_status=NOT_EVALUATED,
        svn=snp["svn"],
        extra={**common, "tee_type": "sevsnpvm", **snp["snp"]},
    )


def appraise_maa_token(
    token: str | bytes,
    *,
    jwks: Mapping[str, Any],
    issuer: str,
    now: datetime,
    leeway: timedelta = DEFAULT_LEEWAY,
    allow_test_instance: bool = False,
) -> Claims:
    payload = verify_maa_signature(
        token, jwks=jwks, issuer=issuer, now=now, leeway=leeway, allow_test_instance=allow_test_instance
    )
    return claims_from_maa_payload(payload)


def verify_maa_token(
    token: str | bytes,
    *,
    jwks: Mapping[str, Any],
    issuer: str,
    now: datetime,
    leeway: timedelta = DEFAULT_LEEWAY,
    allow_test_instance: bool = False,
    allow_debug: bool = False,
    accepted_tcb: Set[str] | None = None,
) -> Claims:
    """Verify an MAA token and normalize it. MAA appraises the TEE's TCB under its own policy
    (identified by `x-ms-policy-hash`) and does not report a status: `tcb_status` is NotEvaluated."""
    claims = appraise_maa_token(
        token, jwks=jwks, issuer=issuer, now=now, leeway=leeway, allow_test_instance=allow_test_instance
    )
    return enforce(claims, allow_debug=allow_debug, accepted_tcb=accepted_tcb)
