"""Wire-level constants and the canonical forms both ends compute (service and client).

Client challenge (Trustee RCAR pattern, ATTESTATION.md §9): the gateway's evidence carries
``report_data = SHA-256(canonical(runtime-data)) || 32 zero bytes`` where ``runtime-data`` is
``{"nonce": <from /auth>, "tee-pubkey": <X25519 JWK>}``. ``canonical`` is JSON with sorted keys, no
whitespace, and only ASCII strings, integers, booleans, lists and objects: for that subset it equals
RFC 8785 (JCS), so no JCS library is needed; anything else is refused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

MAX_BODY = 64 * 1024
KEYS_PREFIX = "/keys/"


def _jcs_safe(obj: Any, depth: int = 0) -> bool:
    if depth > 8:
        return False
    if isinstance(obj, bool | int) or obj is None:
        return True
    if isinstance(obj, str):
        return obj.isascii()
    if isinstance(obj, list):
        return all(_jcs_safe(x, depth + 1) for x in obj)
    if isinstance(obj, dict):
        return all(isinstance(k, str) and k.isascii() and _jcs_safe(v, depth + 1) for k, v in obj.items())
    return False


def canonical(obj: Any) -> bytes:
    if not _jcs_safe(obj):
        raise ValueError("value outside the canonical JSON subset")
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def runtime_report_data(runtime: Mapping[str, Any]) -> bytes:
    return hashlib.sha256(canonical(dict(runtime))).digest() + bytes(32)


def keys_aad(session: str, pack: str) -> bytes:
    return b"cloakgate/v1/keys\0" + session.encode() + b"\0" + pack.encode()


BACKUP_AAD = b"cloakgate/v1/backup"
