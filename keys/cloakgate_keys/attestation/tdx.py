"""Intel TDX quotes, version 4 (TD 1.0 body) and version 5 (TD 1.0 or TD 1.5 body).

`appraise_tdx_quote` verifies and yields claims; `verify_tdx_quote` also applies the shared
debug / TCB policy. Layout: ATTESTATION.md §3.
"""

from __future__ import annotations

import struct
from collections.abc import Set
from datetime import datetime
from typing import Any

from cryptography import x509

from cloakgate_keys.attestation import anchors, dcap
from cloakgate_keys.attestation.claims import Claims
from cloakgate_keys.attestation.collateral import IntelCollateral
from cloakgate_keys.attestation.errors import VerificationError
from cloakgate_keys.attestation.policy import enforce, require_aware
from cloakgate_keys.attestation.tcb import TdxTcb, appraise

TD10_BODY_LEN = 584
TD15_BODY_LEN = 648
_V5_BODY_TYPES = {2: TD10_BODY_LEN, 3: TD15_BODY_LEN}  # 1 would be an SGX body: not a TD quote
_TD_ATTRIBUTE_BITS = {"debug": 0, "sept_ve_disable": 28, "migratable": 29, "pks": 30, "kl": 31, "perfmon": 63}


def _body(quote: bytes, version: int) -> tuple[int, bytes, int]:
    """(body type, body, signed length) for a v4 or v5 quote."""
    if version == 4:
        body_type, offset, size = 2, dcap.HEADER_LEN, TD10_BODY_LEN
    elif version == 5:
        try:
            body_type, size = struct.unpack_from("<HI", quote, dcap.HEADER_LEN)
        except struct.error:
            raise VerificationError("tdx.parse") from None
        if _V5_BODY_TYPES.get(body_type) != size:
            raise VerificationError("tdx.body_type")
        offset = dcap.HEADER_LEN + 6
    else:
        raise VerificationError("tdx.version")
    if len(quote) < offset + size:
        raise VerificationError("tdx.parse")
    return body_type, quote[offset : offset + size], offset + size


def _body_facts(body: bytes) -> dict[str, Any]:
    td_attributes = int.from_bytes(body[120:128], "little")
    facts: dict[str, Any] = {
        "tee_tcb_svn": body[0:16].hex(),
        "mr_seam": body[16:64].hex(),
        "mr_signer_seam": body[64:112].hex(),
        "seam_attributes": body[112:120].hex(),
        "td_attributes": body[120:128].hex(),
        "td_attribute_bits": {
            name: bool(td_attributes >> bit & 1) for name, bit in _TD_ATTRIBUTE_BITS.items()
        },
        "xfam": body[128:136].hex(),
        "mr_td": body[136:184].hex(),
        "mr_config_id": body[184:232].hex(),
        "mr_owner": body[232:280].hex(),
        "mr_owner_config": body[280:328].hex(),
        "rtmrs": [body[328 + 48 * i : 376 + 48 * i].hex() for i in range(4)],
    }
    if len(body) == TD15_BODY_LEN:
        facts.update(tee_tcb_svn2=body[584:600].hex(), mr_service_td=body[600:648].hex())
    return facts


def appraise_tdx_quote(
    quote: bytes,
    *,
    now: datetime,
    collateral: IntelCollateral | None = None,
    root: x509.Certificate | None = None,
) -> Claims:
    """Verify the quote (and collateral, if given) and return its claims. No debug/TCB policy."""
    require_aware(now)
    root = anchors.intel_sgx_root() if root is None else root
    header = dcap.QuoteHeader.parse(quote, kind="tdx")
    if header.tee_type != dcap.TEE_TYPE_TDX:
        raise VerificationError("tdx.version")
    body_type, body, signed_len = _body(quote, header.version)
    verified = dcap.verify_quote(
        quote, header, kind="tdx", signed_len=signed_len, qe_identity=anchors.TD_QE_IDENTITY, now=now,
        root=root,
    )
    td = TdxTcb(tee_tcb_svn=body[0:16], mr_signer_seam=body[64:112], seam_attributes=body[112:120])
    status, tcb_facts = appraise(verified, collateral, root=root, now=now, td=td)
    return Claims(
        tee="tdx",
        measurement=body[136:184].hex(),
        report_data=body[520:584],
        debug=bool(body[120] & 0x01),
        tcb_status=status,
        extra={**verified.facts(), "body_type": body_type, **_body_facts(body), **tcb_facts},
    )


def verify_tdx_quote(
    quote: bytes,
    *,
    now: datetime,
    collateral: IntelCollateral | None = None,
    root: x509.Certificate | None = None,
    allow_debug: bool = False,
    accepted_tcb: Set[str] | None = None,
    allowed_advisories: Set[str] | None = None,
) -> Claims:
    claims = appraise_tdx_quote(quote, now=now, collateral=collateral, root=root)
    return enforce(
        claims, allow_debug=allow_debug, accepted_tcb=accepted_tcb, allowed_advisories=allowed_advisories
    )
