"""One entry point over every evidence type: `verify_evidence(kind, data, ...) -> Claims`.

This is the boundary: besides dispatching it reads `certs_dir` (the only file access in the
verifiers) and turns any parsing accident into a `VerificationError`, so callers handle exactly
one exception type. Format modules stay pure (bytes and an injected `now` in, claims out).
"""

from __future__ import annotations

import json
import pathlib
import re
import struct
from datetime import datetime
from typing import Any

from cloakgate_keys.attestation import der
from cloakgate_keys.attestation.certs import split_certificates
from cloakgate_keys.attestation.claims import Claims
from cloakgate_keys.attestation.collateral import IntelCollateral, parse_intel_collateral
from cloakgate_keys.attestation.errors import VerificationError
from cloakgate_keys.attestation.hcl import is_hcl_report, verify_hcl_report
from cloakgate_keys.attestation.maa import verify_maa_token
from cloakgate_keys.attestation.policy import require_aware
from cloakgate_keys.attestation.ratls import verify_ratls_cert
from cloakgate_keys.attestation.sgx import verify_sgx_quote
from cloakgate_keys.attestation.snp import verify_snp_report
from cloakgate_keys.attestation.tdx import verify_tdx_quote

KINDS = ("sgx", "tdx", "snp", "maa", "ratls", "simulated")
MAX_EVIDENCE_BYTES = 1 << 20
MAX_CERT_FILES = 64
_CERT_SUFFIXES = (".pem", ".der", ".crt", ".cer")
_HEX_TEXT = re.compile(rb"\s*(?:[0-9a-fA-F]{2})+\s*")


def _binary(data: bytes) -> bytes:
    """Evidence files are raw bytes or (as some test vectors are) hex text."""
    return bytes.fromhex(data.decode("ascii")) if _HEX_TEXT.fullmatch(data) else data


def _dir_certs(certs_dir: pathlib.Path | None) -> list[bytes]:
    if certs_dir is None:
        return []
    files = sorted(p for p in certs_dir.iterdir() if p.suffix.lower() in _CERT_SUFFIXES and p.is_file())
    if len(files) > MAX_CERT_FILES:
        raise VerificationError("certs.too_many")
    out: list[bytes] = []
    for path in files:
        out.extend(split_certificates(path.read_bytes()))
    return out


def _intel(collateral: bytes | None) -> IntelCollateral | None:
    return parse_intel_collateral(collateral) if collateral is not None else None


def _amd_certs(collateral: bytes | None, certs_dir: pathlib.Path | None) -> list[bytes]:
    return (split_certificates(collateral) if collateral is not None else []) + _dir_certs(certs_dir)


def _jwks(collateral: bytes | None) -> dict[str, Any]:
    if collateral is None:
        raise VerificationError("maa.jwks_required")
    try:
        jwks = json.loads(collateral)
    except ValueError:
        raise VerificationError("maa.jwks") from None
    if not isinstance(jwks, dict):
        raise VerificationError("maa.jwks")
    return jwks


# Keyword options each kind accepts beyond the common ones (others are refused, not ignored).
_OPTIONS = {
    "sgx": frozenset({"root", "allowed_advisories"}),
    "tdx": frozenset({"root", "allowed_advisories"}),
    "ratls": frozenset({"root", "allowed_advisories", "evidence", "check_validity"}),
    "snp": frozenset({"min_tcb"}),
    "maa": frozenset({"issuer", "leeway", "allow_test_instance"}),
}


def _dispatch(
    kind: str, data: bytes, collateral: bytes | None, certs_dir: pathlib.Path | None, common: dict[str, Any],
    kw: dict[str, Any],
) -> Claims:
    if kind == "sgx":
        return verify_sgx_quote(_binary(data), collateral=_intel(collateral), **common, **kw)
    if kind == "tdx":
        return verify_tdx_quote(_binary(data), collateral=_intel(collateral), **common, **kw)
    if kind == "ratls":
        return verify_ratls_cert(data, collateral=_intel(collateral), **common, **kw)
    if kind == "snp":
        report = _binary(data)
        verify_snp = verify_hcl_report if is_hcl_report(report) else verify_snp_report
        return verify_snp(report, certs=_amd_certs(collateral, certs_dir), **common, **kw)
    issuer = kw.pop("issuer", None)
    if not issuer:
        raise VerificationError("maa.issuer_required")
    return verify_maa_token(data, jwks=_jwks(collateral), issuer=issuer, **common, **kw)


def verify_evidence(
    kind: str,
    data: bytes,
    *,
    now: datetime,
    collateral: bytes | None = None,
    certs_dir: pathlib.Path | None = None,
    allow_debug: bool = False,
    accepted_tcb: frozenset[str] | None = None,
    **kw: Any,
) -> Claims:
    """Verify evidence of `kind` and return its normalized claims, or raise `VerificationError`.

    - sgx / tdx: a DCAP quote (raw or hex); `collateral`: Intel collateral JSON (dcap-qvl
      container). Options: `root` (override the pinned Intel root), `allowed_advisories`.
    - snp: an SNP report (raw or hex) or an Azure HCL report; `collateral`: the VCEK/VLEK (DER or
      PEM, optionally with ASK/ARK); `certs_dir`: more AMD certificates (ASK/ASVK/ARK), read
      here. Option: `min_tcb`. (`certs_dir` is not used for Intel evidence: the Intel SGX Root
      CA is pinned in `anchors`; pass `root=` to override it explicitly.)
    - maa: an MAA JWT; `collateral`: the instance's JWKS JSON; required option `issuer`.
      Options: `leeway`, `allow_test_instance`.
    - ratls: an RA-TLS certificate (PEM or DER); `collateral`: Intel collateral JSON for the
      embedded quote. Options: `root`, `allowed_advisories`, `evidence`, `check_validity`.
    - simulated: delegated to `cloakgate_keys.attestation.simulated.verify`, which enforces
      its own `allow_simulated` switch (default False). Options: `allow_simulated`,
      `platform_key` or `platform_dir` (the simulated platform's public key).
    """
    require_aware(now)
    if len(data) > MAX_EVIDENCE_BYTES or (collateral is not None and len(collateral) > MAX_EVIDENCE_BYTES):
        raise VerificationError("input.too_large")
    if kind == "simulated":
        from cloakgate_keys.attestation.simulated import SimulatedEvidenceError
        from cloakgate_keys.attestation.simulated import verify as verify_simulated

        if not set(kw) <= {"allow_simulated", "platform_key", "platform_dir"}:
            raise VerificationError("options")
        try:
            return verify_simulated(
                data, now=now, allow_simulated=kw.get("allow_simulated", False),
                platform_key=kw.get("platform_key"), platform_dir=kw.get("platform_dir"),
                allow_debug=allow_debug, accepted_tcb=accepted_tcb,
            )
        except SimulatedEvidenceError as e:
            raise VerificationError(f"simulated.{e.code.rsplit('.', 1)[-1]}") from None
    if kind not in _OPTIONS:
        raise VerificationError("kind")
    if not set(kw) <= _OPTIONS[kind]:
        raise VerificationError("options")
    common = {"now": now, "allow_debug": allow_debug, "accepted_tcb": accepted_tcb}
    try:
        return _dispatch(kind, data, collateral, certs_dir, common, dict(kw))
    except VerificationError:
        raise
    except OSError:
        raise VerificationError("certs_dir") from None
    except (der.DerError, ValueError, KeyError, IndexError, TypeError, struct.error, UnicodeError):
        raise VerificationError(f"{kind}.malformed") from None
