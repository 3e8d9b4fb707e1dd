"""Data keys per rule pack, versioned, and the release policy: the service's key store.

A data key is 32 random bytes named by a key id (``kid``): 3 characters of the RFC 4648 base32
alphabet (lowercase), unique across every pack and version this service ever made, retired ones
included. The highest live version of a pack is its primary: new tokens use it, every live version
still decrypts. Retiring a version destroys its material (its kid stays reserved); the primary
cannot be retired, rotate first. The whole store is serialized to JSON and sealed under a key
derived from the master key (``state``): confidentiality and integrity for keys and policy alike.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from .errors import BadRequest, Conflict, NotFound, StateError
from .policy import DENY_ALL, Policy, parse_policy

KID_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
KID_LEN = 3
PACK_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def is_kid(s: object) -> bool:
    return isinstance(s, str) and len(s) == KID_LEN and all(c in KID_ALPHABET for c in s)


def check_pack(name: object) -> str:
    if not isinstance(name, str) or not PACK_RE.match(name):
        raise BadRequest("pack_name")
    return name


@dataclass(frozen=True, eq=False)
class KeyVersion:
    kid: str
    pack: str
    version: int
    created: str
    material: bytes | None = field(repr=False)  # None once retired

    @property
    def retired(self) -> bool:
        return self.material is None

    def to_json(self) -> dict[str, Any]:
        return {"kid": self.kid, "pack": self.pack, "version": self.version, "created": self.created,
                "material": None if self.material is None else base64.b64encode(self.material).decode()}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> KeyVersion:
        m = d["material"]
        return cls(d["kid"], d["pack"], int(d["version"]), d["created"],
                   None if m is None else base64.b64decode(m, validate=True))


class KeyStore:
    def __init__(self, versions: list[KeyVersion] | None = None, policy: Policy = DENY_ALL, *,
                 random: Callable[[int], bytes] = secrets.token_bytes):
        self._versions: list[KeyVersion] = list(versions or [])
        self.policy = policy
        self._random = random

    def to_json(self) -> dict[str, Any]:
        return {"format": "cloakgate-keystore/1", "policy": dict(self.policy.document),
                "versions": [v.to_json() for v in self._versions]}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> KeyStore:
        if doc.get("format") != "cloakgate-keystore/1":
            raise StateError("state_format")
        return cls([KeyVersion.from_json(v) for v in doc["versions"]], parse_policy(doc["policy"]))

    def packs(self) -> list[str]:
        return sorted({v.pack for v in self._versions})

    def live(self, pack: str) -> list[KeyVersion]:
        """Live versions of ``pack``, newest (primary) first. Raises NotFound for an unknown pack."""
        out = sorted((v for v in self._versions if v.pack == pack and not v.retired),
                     key=lambda v: v.version, reverse=True)
        if not out:
            raise NotFound("pack")
        return out

    def _new_kid(self) -> str:
        used = {v.kid for v in self._versions}
        if len(used) >= len(KID_ALPHABET) ** KID_LEN // 2:
            raise Conflict("kid_space")
        while True:
            kid = "".join(KID_ALPHABET[b % 32] for b in self._random(KID_LEN))
            if kid not in used:
                return kid

    def rotate(self, pack: str, now: float) -> KeyVersion:
        """Make a new primary version of ``pack`` (creating the pack at version 1)."""
        check_pack(pack)
        version = 1 + max((v.version for v in self._versions if v.pack == pack), default=0)
        key = KeyVersion(self._new_kid(), pack, version, datetime.fromtimestamp(now, UTC).isoformat(),
                         self._random(32))
        self._versions.append(key)
        return key

    def retire(self, pack: str, kid: str) -> KeyVersion:
        live = self.live(pack)
        match = [v for v in live if v.kid == kid]
        if not match:
            raise NotFound("kid")
        if match[0] is live[0]:
            raise Conflict("retire_primary")
        retired = replace(match[0], material=None)
        self._versions = [retired if v is match[0] else v for v in self._versions]
        return retired

    def set_policy(self, policy: Policy) -> None:
        self.policy = policy
