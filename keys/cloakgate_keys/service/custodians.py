"""Key custodians: a k-of-n quorum of TOTP codes (RFC 6238, pyotp) authorizes admin operations.

- A code is accepted for the current time step or one step either side, and only for a step later
  than the last one that custodian used: no replay, not even of an older code.
- Failed attempts are rate-limited per custodian: after ``MAX_FAILURES`` consecutive failures the
  custodian is locked for ``LOCKOUT`` seconds, doubling with each further failure (capped), and codes
  sent while locked are refused unchecked.
- Any wrong code refuses the whole request (valid codes sent with it are still consumed).
The book is a plain object; ``state`` persists it sealed. Secrets never leave except once, as
otpauth URIs at enrolment.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyotp

from .errors import BadRequest, Unauthorized

MAX_FAILURES = 3
LOCKOUT = 60.0
MAX_LOCKOUT = 3600.0
MAX_CUSTODIANS = 16
ISSUER = "cloakgate-keys"


@dataclass
class Custodian:
    id: str
    secret: str = field(repr=False)
    last_step: int = -1
    failures: int = 0
    locked_until: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "secret": self.secret, "last_step": self.last_step,
                "failures": self.failures, "locked_until": self.locked_until}


@dataclass(frozen=True)
class Outcome:
    """What an authorization attempt did, for the audit log (ids only)."""

    accepted: tuple[str, ...]
    refused: tuple[str, ...]
    locked: tuple[str, ...]


class QuorumRefused(Unauthorized):
    """Too few valid custodian codes, or a wrong, replayed or rate-limited one."""

    def __init__(self, outcome: Outcome):
        super().__init__("custodian_codes")
        self.outcome = outcome


class CustodianBook:
    def __init__(self, custodians: list[Custodian], threshold: int):
        if not 1 <= threshold <= len(custodians) <= MAX_CUSTODIANS:
            raise ValueError("need 1 <= threshold <= custodians <= 16")
        self.custodians = {c.id: c for c in custodians}
        self.threshold = threshold

    @classmethod
    def enroll(cls, n: int, k: int, *, service_name: str = "key-service") -> tuple[CustodianBook, list[str]]:
        people = [Custodian(f"c{i}", pyotp.random_base32()) for i in range(1, n + 1)]
        book = cls(people, k)
        uris = [pyotp.TOTP(c.secret).provisioning_uri(name=f"{service_name}:{c.id}", issuer_name=ISSUER)
                for c in people]
        return book, uris

    def to_json(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "custodians": [c.to_json() for c in self.custodians.values()]}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> CustodianBook:
        return cls([Custodian(**c) for c in doc["custodians"]], int(doc["threshold"]))

    def _match(self, c: Custodian, code: str, now: float) -> int | None:
        if not (isinstance(code, str) and len(code) == 6 and code.isdigit()):
            return None
        totp = pyotp.TOTP(c.secret)
        step = int(now) // totp.interval
        for s in (step - 1, step, step + 1):
            if s > c.last_step and hmac.compare_digest(totp.generate_otp(s), code):
                return s
        return None

    def _fail(self, c: Custodian, now: float) -> None:
        c.failures += 1
        if c.failures >= MAX_FAILURES:
            c.locked_until = now + min(MAX_LOCKOUT, LOCKOUT * 2 ** (c.failures - MAX_FAILURES))

    def authorize(self, codes: Mapping[str, str], now: float) -> Outcome:
        """Check ``{custodian id: code}``. Returns the outcome when at least ``threshold`` distinct
        custodians gave valid codes and none gave a wrong one; raises ``QuorumRefused`` otherwise (its
        ``outcome`` holds the ids for the audit). Mutates replay and
        rate-limit state either way: persist the book afterwards."""
        if not isinstance(codes, Mapping) or len(codes) > MAX_CUSTODIANS:
            raise BadRequest("codes")
        accepted, refused, locked = [], [], []
        for cid, code in codes.items():
            c = self.custodians.get(cid) if isinstance(cid, str) else None
            if c is None:
                refused.append(str(cid)[:16])
                continue
            if now < c.locked_until:
                locked.append(cid)
                continue
            step = self._match(c, code, now)
            if step is None:
                self._fail(c, now)
                refused.append(cid)
            else:
                c.last_step, c.failures, c.locked_until = step, 0, 0.0
                accepted.append(cid)
        outcome = Outcome(tuple(accepted), tuple(refused), tuple(locked))
        if refused or locked or len(accepted) < self.threshold:
            raise QuorumRefused(outcome)
        return outcome
