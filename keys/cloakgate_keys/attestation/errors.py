"""The one error every attestation verifier raises.

`reason` is a short, stable code such as ``"sgx.pck_chain"``, ``"snp.signature"``,
``"tcb.status"`` or ``"debug"``. It is built from constants only, never from evidence bytes,
keys or claim values, so it may be logged, returned to a peer or asserted on in tests.
"""

from __future__ import annotations


class VerificationError(Exception):
    """Evidence did not verify, or did not satisfy the verifier's policy."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
