"""Intel SGX DCAP ECDSA quotes (version 3; version 4 with tee_type 0 shares the layout).

`appraise_sgx_quote` verifies and yields claims; `verify_sgx_quote` also applies the shared
debug / TCB policy. Layout: ATTESTATION.md §2.
"""

from __future__ import annotations

from collections.abc import Set
from datetime import datetime

from cryptography import x509

from cloakgate_keys.attestation import anchors, dcap
from cloakgate_keys.attestation.claims import Claims
from cloakgate_keys.attestation.collateral import IntelCollateral
from cloakgate_keys.attestation.errors import VerificationError
from cloakgate_keys.attestation.policy import enforce, require_aware
from cloakgate_keys.attestation.tcb import appraise

SIGNED_LEN = dcap.HEADER_LEN + dcap.REPORT_BODY_LEN  # 432


def appraise_sgx_quote(
    quote: bytes,
    *,
    now: datetime,
    collateral: IntelCollateral | None = None,
    root: x509.Certificate | None = None,
) -> Claims:
    """Verify the quote (and collateral, if given) and return its claims. No debug/TCB policy."""
    require_aware(now)
    root = anchors.intel_sgx_root() if root is None else root
    header = dcap.QuoteHeader.parse(quote, kind="sgx")
    if header.version not in (3, 4) or header.tee_type != dcap.TEE_TYPE_SGX:
        raise VerificationError("sgx.version")
    if len(quote) < SIGNED_LEN:
        raise VerificationError("sgx.parse")
    verified = dcap.verify_quote(
        quote, header, kind="sgx", signed_len=SIGNED_LEN, qe_identity=anchors.SGX_QE_IDENTITY, now=now,
        root=root,
    )
    body = dcap.EnclaveReport.parse(quote[dcap.HEADER_LEN : SIGNED_LEN])
    status, tcb_facts = appraise(verified, collateral, root=root, now=now)
    return Claims(
        tee="sgx",
        measurement=body.mrenclave.hex(),
        report_data=body.report_data,
        debug=body.debug,
        tcb_status=status,
        signer=body.mrsigner.hex(),
        product_id=body.isv_prod_id,
        svn=body.isv_svn,
        extra={
            **verified.facts(),
            "cpusvn": body.cpusvn.hex(),
            "miscselect": body.miscselect,
            "attributes_flags": body.flags,
            "xfrm": body.xfrm,
            "isv_ext_prod_id": body.isv_ext_prod_id.hex(),
            "isv_family_id": body.isv_family_id.hex(),
            "config_id": body.config_id.hex(),
            "config_svn": body.config_svn,
            **tcb_facts,
        },
    )


def verify_sgx_quote(
    quote: bytes,
    *,
    now: datetime,
    collateral: IntelCollateral | None = None,
    root: x509.Certificate | None = None,
    allow_debug: bool = False,
    accepted_tcb: Set[str] | None = None,
    allowed_advisories: Set[str] | None = None,
) -> Claims:
    claims = appraise_sgx_quote(quote, now=now, collateral=collateral, root=root)
    return enforce(
        claims, allow_debug=allow_debug, accepted_tcb=accepted_tcb, allowed_advisories=allowed_advisories
    )
