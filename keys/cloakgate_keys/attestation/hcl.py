"""Azure confidential VM "HCL report" (vTPM NV index 0x01400001): an SNP report wrapped with the
runtime data it binds (ATTESTATION.md §8.4).

[0:32) header "HCLA", version, size, report type (2 = SNP); [32:1216) the SNP report;
then IGVM request data: data_size, version, report_type, hash_type, runtime_data_size (u32 LE
each) and the runtime-data JSON, whose hash must fill REPORT_DATA (zero padded).
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterable, Mapping, Set
from dataclasses import replace
from datetime import datetime
from typing import Any

from cloakgate_keys.attestation.claims import Claims
from cloakgate_keys.attestation.errors import VerificationError
from cloakgate_keys.attestation.policy import enforce
from cloakgate_keys.attestation.snp import REPORT_LEN, appraise_snp_report

MAGIC = b"HCLA"
_HEADER_LEN = 32
_REPORT_END = _HEADER_LEN + REPORT_LEN
_REQUEST_HEADER = "<IIIII"
_REPORT_TYPE_SNP = 2
_HASHES = {1: hashlib.sha256, 2: hashlib.sha384, 3: hashlib.sha512}


def is_hcl_report(data: bytes) -> bool:
    return data[:4] == MAGIC


def _runtime_data(data: bytes) -> tuple[bytes, int]:
    try:
        version, size, report_type = struct.unpack_from("<III", data, 4)
        _, _, request_type, hash_type, runtime_size = struct.unpack_from(_REQUEST_HEADER, data, _REPORT_END)
    except struct.error:
        raise VerificationError("hcl.parse") from None
    start = _REPORT_END + struct.calcsize(_REQUEST_HEADER)
    if (
        not is_hcl_report(data)
        or version != 1
        or report_type != _REPORT_TYPE_SNP
        or request_type != _REPORT_TYPE_SNP
        or hash_type not in _HASHES
        or start + runtime_size > min(size, len(data))
    ):
        raise VerificationError("hcl.parse")
    return data[start : start + runtime_size], hash_type


def appraise_hcl_report(
    data: bytes, *, certs: Iterable[bytes], now: datetime, min_tcb: Mapping[str, int] | None = None
) -> Claims:
    """Verify the wrapped SNP report and that it binds the runtime data. No debug/TCB policy."""
    runtime, hash_type = _runtime_data(data)
    claims = appraise_snp_report(data[_HEADER_LEN:_REPORT_END], certs=certs, now=now, min_tcb=min_tcb)
    digest = _HASHES[hash_type](runtime).digest()
    if claims.report_data != digest.ljust(64, b"\x00"):
        raise VerificationError("hcl.binding")
    try:
        runtime_json: Any = json.loads(runtime)
    except ValueError:
        raise VerificationError("hcl.parse") from None
    hcl = {"runtime_data_hash": digest.hex(), "runtime_data": runtime_json}
    return replace(claims, extra={**claims.extra, "hcl": hcl})


def verify_hcl_report(
    data: bytes,
    *,
    certs: Iterable[bytes],
    now: datetime,
    min_tcb: Mapping[str, int] | None = None,
    allow_debug: bool = False,
    accepted_tcb: Set[str] | None = None,
) -> Claims:
    claims = appraise_hcl_report(data, certs=certs, now=now, min_tcb=min_tcb)
    return enforce(claims, allow_debug=allow_debug, accepted_tcb=accepted_tcb)
