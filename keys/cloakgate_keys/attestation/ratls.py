"""RA-TLS certificates: a self-signed X.509 certificate whose extension carries TEE evidence
binding the certificate's public key (ATTESTATION.md §7, §10; interoperable RA-TLS).

Formats:
- TCG DICE tagged evidence, OID 2.23.133.5.4.9 (Gramine >= 1.8, Intel SGX SDK >= 2.22,
  Inclavare rats-tls): CBOR tag 60000 [quote, claims-buffer]; claims-buffer is a CBOR map with
  "pubkey-hash": CBOR [hash-alg-id, hash(SPKI)]; REPORTDATA = hash(claims-buffer), zero padded.
- Gramine legacy "SGX quote" extension (its OID TLV used as OID content, so it parses as
  0.6.9.42.840.113741.1337.6): the raw quote, REPORTDATA = SHA-256(SPKI) || 0^32. Used only
  when the TCG extension is absent. Intel's legacy extension 1.2.840.113741.1.13.1 is NOT read:
  its quote binds the claims buffer, not the key.

The embedded quote is verified like any SGX/TDX quote (PCK chain in the quote, optional
collateral); the certificate's fixed validity dates are checked unless `check_validity=False`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Set
from dataclasses import replace
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from cloakgate_keys.attestation import cbor, der
from cloakgate_keys.attestation.certs import RawCert, parse_cert, split_certificates, verify_signature
from cloakgate_keys.attestation.claims import Claims
from cloakgate_keys.attestation.collateral import IntelCollateral
from cloakgate_keys.attestation.errors import VerificationError
from cloakgate_keys.attestation.policy import enforce, require_aware
from cloakgate_keys.attestation.sgx import appraise_sgx_quote
from cloakgate_keys.attestation.tdx import appraise_tdx_quote

TCG_DICE_TAGGED_EVIDENCE = "2.23.133.5.4.9"
GRAMINE_LEGACY_OID_CONTENT = bytes.fromhex("06092a864886f84d8a3906")
CBOR_TAG_INTEL_QUOTE = 60000
# IANA Named Information hash algorithm ids
_HASH_ALGS: dict[int, tuple[str, Callable[[bytes], Any]]] = {
    1: ("sha-256", hashlib.sha256),
    7: ("sha-384", hashlib.sha384),
    8: ("sha-512", hashlib.sha512),
}
EVIDENCE_FORMATS = ("auto", "tcg", "gramine-legacy")


def _load(cert: bytes) -> RawCert:
    try:
        blocks = split_certificates(cert)
        if len(blocks) != 1:
            raise der.DerError("expected exactly one certificate")
        parsed = parse_cert(blocks[0])
        if parsed.issuer != parsed.subject:
            raise VerificationError("ratls.self_signature")
        verify_signature(parsed, parsed.public_key())
    except (der.DerError, InvalidSignature):
        raise VerificationError("ratls.self_signature") from None
    return parsed


def _tcg_evidence(value: bytes, spki: bytes) -> tuple[bytes, bytes, dict[str, Any]]:
    """(quote, expected REPORTDATA, facts) from a TCG tagged-evidence extension value."""
    try:
        tagged = cbor.loads(value)
        if not isinstance(tagged, cbor.Tag) or tagged.number != CBOR_TAG_INTEL_QUOTE:
            raise VerificationError("ratls.evidence")
        quote, buffer = tagged.value
        claims = cbor.loads(buffer)
        alg_id, pubkey_hash = cbor.loads(claims["pubkey-hash"])
    except (cbor.CborError, ValueError, TypeError, KeyError):
        raise VerificationError("ratls.evidence") from None
    if not isinstance(quote, bytes) or not isinstance(pubkey_hash, bytes) or alg_id not in _HASH_ALGS:
        raise VerificationError("ratls.evidence")
    alg_name, hash_fn = _HASH_ALGS[alg_id]
    if hash_fn(spki).digest() != pubkey_hash:
        raise VerificationError("ratls.pubkey_binding")
    facts: dict[str, Any] = {
        "format": "tcg",
        "pubkey_hash_alg": alg_name,
        "pubkey_hash": pubkey_hash.hex(),
        "claim_names": sorted(str(k) for k in claims),
    }
    if isinstance(claims.get("nonce"), bytes):
        facts["nonce"] = claims["nonce"].hex()
    return quote, hash_fn(buffer).digest().ljust(64, b"\x00"), facts


def _legacy_evidence(value: bytes, spki: bytes) -> tuple[bytes, bytes, dict[str, Any]]:
    digest = hashlib.sha256(spki).digest()
    facts = {"format": "gramine-legacy", "pubkey_hash_alg": "sha-256", "pubkey_hash": digest.hex()}
    return value, digest + bytes(32), facts


def appraise_ratls_cert(
    cert: bytes,
    *,
    now: datetime,
    collateral: IntelCollateral | None = None,
    root: x509.Certificate | None = None,
    evidence: str = "auto",
    check_validity: bool = True,
) -> Claims:
    """Verify the certificate, its evidence and the key binding; return the quote's claims with
    an `extra["ratls"]` section. No debug/TCB policy."""
    require_aware(now)
    if evidence not in EVIDENCE_FORMATS:
        raise ValueError(f"evidence must be one of {EVIDENCE_FORMATS}")
    parsed = _load(cert)
    if check_validity and not parsed.valid_at(now):
        raise VerificationError("ratls.validity")
    tcg = parsed.extension(TCG_DICE_TAGGED_EVIDENCE)
    legacy = parsed.extension_by_content(GRAMINE_LEGACY_OID_CONTENT)
    if tcg is not None and evidence in ("auto", "tcg"):
        quote, expected, facts = _tcg_evidence(tcg.value, parsed.spki)
    elif legacy is not None and evidence in ("auto", "gramine-legacy"):
        quote, expected, facts = _legacy_evidence(legacy.value, parsed.spki)
    else:
        raise VerificationError("ratls.no_evidence")
    is_tdx = quote[:2] in (b"\x04\x00", b"\x05\x00") and quote[4:8] == b"\x81\x00\x00\x00"
    appraise_quote = appraise_tdx_quote if is_tdx else appraise_sgx_quote
    claims = appraise_quote(quote, now=now, collateral=collateral, root=root)
    if claims.report_data != expected:
        raise VerificationError("ratls.report_data_binding")
    return replace(claims, extra={**claims.extra, "ratls": facts})


def verify_ratls_cert(
    cert: bytes,
    *,
    now: datetime,
    collateral: IntelCollateral | None = None,
    root: x509.Certificate | None = None,
    evidence: str = "auto",
    check_validity: bool = True,
    allow_debug: bool = False,
    accepted_tcb: Set[str] | None = None,
    allowed_advisories: Set[str] | None = None,
) -> Claims:
    claims = appraise_ratls_cert(
        cert, now=now, collateral=collateral, root=root, evidence=evidence, check_validity=check_validity
    )
    return enforce(
        claims, allow_debug=allow_debug, accepted_tcb=accepted_tcb, allowed_advisories=allowed_advisories
    )
