"""Verify a peer's evidence by kind: simulated here, hardware kinds through the attestation dispatcher.

Used by the service (the gateway's evidence) and by the client (the service's RA-TLS evidence). Every
failure becomes one ``EvidenceRejected`` carrying the verifier's own reason code (which names a
check, never a value) or "invalid". The verifier's exception is chained for debugging;
its text is never shown to the peer (the service answers only ``denied.evidence``).
"""

from __future__ import annotations

import os
import re
import ssl
import struct
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..attestation import simulated
from ..attestation.claims import Claims

HARDWARE_KINDS = frozenset({"sgx", "tdx", "snp"})
# GHCB certificate table GUIDs (ATTESTATION.md §5.3): VCEK, VLEK, ASK/ASVK, ARK
SNP_CERT_GUIDS = frozenset(uuid.UUID(g).bytes for g in (
    "63da758d-e664-4564-adc5-f4b93be8accd", "a8074bc2-a25a-483e-aae6-39c045a0b8a1",
    "4ab7b379-bbac-4fe4-a02f-05aef327c782", "c0b406a4-a803-4952-9743-3fb6014cd0ae"))
_MAX_TABLE_ENTRIES = 32
_CODE = re.compile(r"^[a-z0-9_.]{1,64}$")


class EvidenceRejected(Exception):
    """Evidence refused. ``reason`` is the check that failed (e.g. "debug", "sgx.pck_chain")."""

    def __init__(self, reason: str = "invalid"):
        self.reason = reason
        self.code = f"cloakgate_keys.evidence.{reason}"
        super().__init__(self.code)


@dataclass(frozen=True)
class VerifierConfig:
    """How to verify evidence. Simulated evidence is refused unless ``allow_simulated``; debug evidence
    unless ``allow_debug``. ``options`` go to the hardware verifiers (collateral, pinned roots, ...)."""

    allow_simulated: bool = False
    sim_platform_key: bytes | None = field(default=None, repr=False)
    sim_platform_dir: str | os.PathLike[str] | None = None
    allow_debug: bool = False
    accepted_tcb: frozenset[str] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


def snp_certificates_pem(table: bytes) -> bytes:
    """The AMD certificates of an SNP extended-report certificate table (configfs ``auxblob``) as
    concatenated PEM, the form the SNP verifier takes as collateral."""
    out = []
    for i in range(_MAX_TABLE_ENTRIES):
        entry = table[24 * i: 24 * i + 24]
        if len(entry) < 24:
            raise EvidenceRejected("snp_cert_table")
        if entry == bytes(24):
            return b"".join(out)
        offset, length = struct.unpack("<II", entry[16:])
        if length == 0 or offset + length > len(table):
            raise EvidenceRejected("snp_cert_table")
        if entry[:16] in SNP_CERT_GUIDS:
            out.append(ssl.DER_cert_to_PEM_cert(table[offset: offset + length]).encode())
    raise EvidenceRejected("snp_cert_table")


def _reason(e: Exception) -> str:
    """The verifier's own code (simulated: ``code``; hardware verifiers: ``reason``), which names a
    check and never a value; "invalid" when it has none."""
    code = getattr(e, "code", None) or getattr(e, "reason", None)
    if isinstance(code, str) and code.startswith("cloakgate_keys."):
        code = code.rsplit(".", 1)[-1]
    return code if isinstance(code, str) and _CODE.match(code) else "invalid"


def verify(config: VerifierConfig, kind: str, data: bytes, aux: bytes, *, now: datetime) -> Claims:
    """Verify ``data`` as evidence of ``kind``. For SNP a non-empty ``aux`` (certificate table) becomes
    the verifier's ``collateral`` unless the configuration gives one."""
    try:
        if kind == "simulated":
            claims = simulated.verify(
                data, now=now, allow_simulated=config.allow_simulated, platform_key=config.sim_platform_key,
                platform_dir=config.sim_platform_dir, allow_debug=config.allow_debug,
                accepted_tcb=config.accepted_tcb)
        elif kind in HARDWARE_KINDS:
            from ..attestation.verify import verify_evidence  # lazy: written by the verifier work

            kw = dict(config.options)
            if kind == "snp" and aux and "collateral" not in kw:
                kw["collateral"] = snp_certificates_pem(aux)
            claims = verify_evidence(kind, data, now=now, allow_debug=config.allow_debug,
                                     accepted_tcb=config.accepted_tcb, **kw)
        else:
            raise EvidenceRejected("unsupported_kind")
    except EvidenceRejected:
        raise
    except ModuleNotFoundError as e:
        raise EvidenceRejected("no_verifier") from e
    except Exception as e:  # any verifier failure is a refusal, never a crash or a leak
        raise EvidenceRejected(_reason(e)) from e
    if not isinstance(claims, Claims):
        raise EvidenceRejected("invalid")
    if claims.tee != kind:
        raise EvidenceRejected("kind_mismatch")
    if claims.debug and not config.allow_debug:
        raise EvidenceRejected("debug")
    if len(claims.report_data) != 64:
        raise EvidenceRejected("invalid")
    return claims
