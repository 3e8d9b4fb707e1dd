"""The verifier-level policy every evidence type shares: debug refusal and accepted TCB status.

Richer release policy (measurements, signers, claims) is evaluated over `Claims` elsewhere.
"""

from __future__ import annotations

from collections.abc import Set
from datetime import datetime

from cloakgate_keys.attestation.claims import Claims
from cloakgate_keys.attestation.errors import VerificationError

# Reported when nothing signed by the TEE vendor told us the TCB status: no collateral was given
# (SGX/TDX), AMD publishes no status (SNP without a configured minimum TCB), or the status was
# appraised by a remote service whose token does not carry it (MAA).
NOT_EVALUATED = "NotEvaluated"
INTEL_TCB_STATUSES = frozenset(
    {
        "UpToDate",
        "SWHardeningNeeded",
        "ConfigurationNeeded",
        "ConfigurationAndSWHardeningNeeded",
        "OutOfDate",
        "OutOfDateConfigurationNeeded",
        "Revoked",
    }
)
# Fail closed: only an evaluated, up-to-date TCB passes unless the caller says otherwise.
DEFAULT_ACCEPTED_TCB = frozenset({"UpToDate"})


def require_aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    return now


def enforce(
    claims: Claims,
    *,
    allow_debug: bool = False,
    accepted_tcb: Set[str] | None = None,
    allowed_advisories: Set[str] | None = None,
) -> Claims:
    """Refuse debug evidence unless allowed, and TCB statuses outside `accepted_tcb`.

    With `allowed_advisories`, a TCB that is not UpToDate also needs every advisory it lists
    to be in that allow-list.
    """
    if claims.debug and not allow_debug:
        raise VerificationError("debug")
    accepted = DEFAULT_ACCEPTED_TCB if accepted_tcb is None else accepted_tcb
    if claims.tcb_status not in accepted:
        raise VerificationError("tcb.unevaluated" if claims.tcb_status == NOT_EVALUATED else "tcb.status")
    if allowed_advisories is not None and claims.tcb_status != "UpToDate":
        if not set(claims.extra.get("advisory_ids", ())) <= allowed_advisories:
            raise VerificationError("tcb.advisory")
    return claims
