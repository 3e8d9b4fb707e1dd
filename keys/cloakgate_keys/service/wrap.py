"""Wrapping to a recipient's X25519 public key (ECIES): ephemeral X25519 ECDH, HKDF-SHA256, AES-256-GCM.

Envelope (JSON-safe): ``{"alg": ALG, "epk": b64url, "iv": b64url, "ct": b64url}``. The caller's
associated data binds the context (session, pack, purpose) and is not carried in the envelope.
HKDF salt = epk || recipient public key, so a ciphertext is bound to both keys. ``unwrap`` raises
one opaque ``UnwrapError`` for every failure.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ALG = "X25519-HKDF-SHA256-A256GCM"
_INFO = b"cloakgate/v1/wrap"


class UnwrapError(Exception):
    """The envelope could not be opened."""


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(text: str) -> bytes:
    if not isinstance(text, str) or len(text) > 1 << 22:
        raise ValueError("not base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64u(data) != text:
        raise ValueError("not canonical base64url")
    return data


def raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_jwk(key: X25519PublicKey) -> dict[str, str]:
    return {"kty": "OKP", "crv": "X25519", "x": b64u(raw_public(key))}


def public_from_jwk(jwk: object) -> X25519PublicKey:
    if not isinstance(jwk, Mapping) or set(jwk) != {"kty", "crv", "x"}:
        raise ValueError("unsupported key")
    if jwk["kty"] != "OKP" or jwk["crv"] != "X25519":
        raise ValueError("unsupported key")
    raw = unb64u(jwk["x"])
    if len(raw) != 32:
        raise ValueError("unsupported key")
    return X25519PublicKey.from_public_bytes(raw)


def _kek(shared: bytes, epk: bytes, recipient: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=epk + recipient, info=_INFO).derive(shared)


def wrap(recipient: X25519PublicKey, plaintext: bytes, aad: bytes) -> dict[str, str]:
    eph = X25519PrivateKey.generate()
    epk, rcpt = raw_public(eph.public_key()), raw_public(recipient)
    shared = eph.exchange(recipient)
    iv = os.urandom(12)
    ct = AESGCM(_kek(shared, epk, rcpt)).encrypt(iv, plaintext, aad)
    return {"alg": ALG, "epk": b64u(epk), "iv": b64u(iv), "ct": b64u(ct)}


def unwrap(private: X25519PrivateKey, envelope: Any, aad: bytes) -> bytes:
    try:
        if not isinstance(envelope, Mapping) or set(envelope) != {"alg", "epk", "iv", "ct"}:
            raise ValueError
        if envelope["alg"] != ALG:
            raise ValueError
        epk, iv, ct = unb64u(envelope["epk"]), unb64u(envelope["iv"]), unb64u(envelope["ct"])
        if len(epk) != 32 or len(iv) != 12:
            raise ValueError
        shared = private.exchange(X25519PublicKey.from_public_bytes(epk))
        kek = _kek(shared, epk, raw_public(private.public_key()))
        return AESGCM(kek).decrypt(iv, ct, aad)
    except (ValueError, TypeError, InvalidTag) as e:
        raise UnwrapError("cannot unwrap") from e
