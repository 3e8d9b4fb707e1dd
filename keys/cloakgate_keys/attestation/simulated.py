"""Simulated TEE: a software "platform" that signs evidence, and its verifier.

For development only. The platform is an Ed25519 key plus a 32-byte secret kept in a directory
(the simulated hardware root, insecure by design: whoever reads that directory can forge evidence
and derive every simulated sealing key). The verifier refuses simulated evidence unless the caller
passes ``allow_simulated=True``, and the resulting claims say ``tee="simulated"`` so every status
output shows SIMULATED.

Evidence layout (all of it signed; any changed byte fails)::

    b"CGSIMEV1" || u32 big-endian len(body) || body || Ed25519 signature (64 bytes)

``body`` is canonical JSON (sorted keys, no spaces) with exactly the fields of ``_FIELDS``. The
signature covers magic, length and body.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .claims import Claims

MAGIC = b"CGSIMEV1"
TEE = "simulated"
TCB_STATUS = "Simulated"
MAX_BODY = 4096
FUTURE_SKEW = 300  # seconds an evidence timestamp may lie ahead of "now"
_SIG_LEN = 64
_HEX = frozenset("0123456789abcdef")
_FIELDS = {
    "v": int,
    "tee": str,
    "platform": str,
    "measurement": str,
    "signer": (str, type(None)),
    "product_id": int,
    "svn": int,
    "debug": bool,
    "tcb_status": str,
    "report_data": str,
    "issued_at": int,
}
KEY_FILE = "platform.key"
SECRET_FILE = "platform.secret"
PUB_FILE = "platform.pub"


class SimulatedEvidenceError(Exception):
    """Simulated evidence was refused. ``code`` says why; the message never holds input values."""

    def __init__(self, code: str):
        super().__init__(f"simulated evidence refused: {code}")
        self.code = f"cloakgate_keys.attestation.simulated.{code}"


def _is_hex(s: object, lengths: tuple[int, ...]) -> bool:
    return isinstance(s, str) and len(s) in lengths and set(s) <= _HEX


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def platform_id(public_key: bytes) -> str:
    return hashlib.sha256(public_key).hexdigest()[:16]


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


@dataclass(frozen=True, eq=False)
class SimulatedPlatform:
    """The simulated hardware root: evidence signing key and sealing secret. Never printed."""

    signing_key: Ed25519PrivateKey = field(repr=False)
    secret: bytes = field(repr=False)

    @classmethod
    def create(cls, directory: str | os.PathLike[str]) -> SimulatedPlatform:
        d = Path(directory)
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        secret = os.urandom(32)
        raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
        _write_private(d / KEY_FILE, raw)
        _write_private(d / SECRET_FILE, secret)
        pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        (d / PUB_FILE).write_text(pub.hex() + "\n")
        return cls(key, secret)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> SimulatedPlatform:
        d = Path(directory)
        raw, secret = (d / KEY_FILE).read_bytes(), (d / SECRET_FILE).read_bytes()
        if len(raw) != 32 or len(secret) != 32:
            raise ValueError("simulated platform files are malformed")
        return cls(Ed25519PrivateKey.from_private_bytes(raw), secret)

    @classmethod
    def load_or_create(cls, directory: str | os.PathLike[str]) -> SimulatedPlatform:
        if (Path(directory) / KEY_FILE).exists():
            return cls.load(directory)
        return cls.create(directory)

    @property
    def public_key(self) -> bytes:
        return self.signing_key.public_key().public_bytes(serialization.Encoding.Raw,
                                                          serialization.PublicFormat.Raw)

    def sealing_key(self, measurement: str) -> bytes:
        """A 32-byte key only this platform and this measurement derive (like SGX MRENCLAVE sealing)."""
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                    info=b"cloakgate/v1/simulated/seal/" + measurement.encode()).derive(self.secret)

    def report(self, report_data: bytes, *, measurement: str, now: datetime, signer: str | None = None,
               product_id: int = 0, svn: int = 0, debug: bool = False) -> bytes:
        if len(report_data) != 64:
            raise ValueError("report_data must be 64 bytes")
        if not _is_hex(measurement, (64, 96)) or (signer is not None and not _is_hex(signer, (64, 96))):
            raise ValueError("measurement and signer must be lowercase hex of 32 or 48 bytes")
        body = canonical_json({
            "v": 1, "tee": TEE, "platform": platform_id(self.public_key), "measurement": measurement,
            "signer": signer, "product_id": product_id, "svn": svn, "debug": debug,
            "tcb_status": TCB_STATUS, "report_data": report_data.hex(), "issued_at": int(now.timestamp()),
        })
        signed = MAGIC + struct.pack(">I", len(body)) + body
        return signed + self.signing_key.sign(signed)


def load_platform_public_key(directory: str | os.PathLike[str]) -> bytes:
    """The platform's public key as written by ``SimulatedPlatform.create`` (``platform.pub``, hex)."""
    text = (Path(directory) / PUB_FILE).read_text().strip()
    if not _is_hex(text, (64,)):
        raise ValueError("simulated platform public key is malformed")
    return bytes.fromhex(text)


def _public_key(platform_key: bytes | str | Ed25519PublicKey | None,
                platform_dir: str | os.PathLike[str] | None) -> Ed25519PublicKey:
    if isinstance(platform_key, Ed25519PublicKey):
        return platform_key
    if isinstance(platform_key, str):
        platform_key = bytes.fromhex(platform_key)
    if platform_key is None:
        if platform_dir is None:
            raise SimulatedEvidenceError("no_platform_key")
        try:
            platform_key = load_platform_public_key(platform_dir)
        except (OSError, ValueError) as e:
            raise SimulatedEvidenceError("no_platform_key") from e
    if len(platform_key) != 32:
        raise SimulatedEvidenceError("no_platform_key")
    return Ed25519PublicKey.from_public_bytes(platform_key)


def _parse_body(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise SimulatedEvidenceError("malformed") from e
    if not isinstance(doc, dict) or set(doc) != set(_FIELDS) or canonical_json(doc) != body:
        raise SimulatedEvidenceError("malformed")
    for name, typ in _FIELDS.items():
        v = doc[name]
        if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
            raise SimulatedEvidenceError("malformed")
    if doc["v"] != 1 or doc["tee"] != TEE or doc["tcb_status"] != TCB_STATUS:
        raise SimulatedEvidenceError("malformed")
    if not _is_hex(doc["measurement"], (64, 96)) or not _is_hex(doc["report_data"], (128,)):
        raise SimulatedEvidenceError("malformed")
    if doc["signer"] is not None and not _is_hex(doc["signer"], (64, 96)):
        raise SimulatedEvidenceError("malformed")
    return doc


def verify(data: bytes, *, now: datetime, allow_simulated: bool = False,
           platform_key: bytes | str | Ed25519PublicKey | None = None,
           platform_dir: str | os.PathLike[str] | None = None, allow_debug: bool = False,
           accepted_tcb: frozenset[str] | set[str] | list[str] | tuple[str, ...] | None = None) -> Claims:
    """Verify simulated evidence and return its claims.

    Refused unless ``allow_simulated``. The platform public key comes from ``platform_key`` (raw 32
    bytes, hex, or a key object), else ``platform_dir/platform.pub``; without either it refuses.
    Debug evidence is refused unless ``allow_debug``; when ``accepted_tcb`` is given it must contain
    "Simulated".
    """
    if not allow_simulated:
        raise SimulatedEvidenceError("not_allowed")
    key = _public_key(platform_key, platform_dir)
    if len(data) < len(MAGIC) + 4 + _SIG_LEN or data[: len(MAGIC)] != MAGIC:
        raise SimulatedEvidenceError("malformed")
    (n,) = struct.unpack(">I", data[len(MAGIC): len(MAGIC) + 4])
    if n > MAX_BODY or len(data) != len(MAGIC) + 4 + n + _SIG_LEN:
        raise SimulatedEvidenceError("malformed")
    signed, sig = data[:-_SIG_LEN], data[-_SIG_LEN:]
    try:
        key.verify(sig, signed)
    except InvalidSignature as e:
        raise SimulatedEvidenceError("signature") from e
    doc = _parse_body(signed[len(MAGIC) + 4:])
    pub = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if doc["platform"] != platform_id(pub):
        raise SimulatedEvidenceError("platform")
    if doc["issued_at"] > now.timestamp() + FUTURE_SKEW:
        raise SimulatedEvidenceError("not_yet_valid")
    if doc["debug"] and not allow_debug:
        raise SimulatedEvidenceError("debug")
    if accepted_tcb is not None and TCB_STATUS not in accepted_tcb:
        raise SimulatedEvidenceError("tcb_status")
    return Claims(
        tee=TEE, measurement=doc["measurement"], report_data=bytes.fromhex(doc["report_data"]),
        debug=doc["debug"], tcb_status=TCB_STATUS, signer=doc["signer"], product_id=doc["product_id"],
        svn=doc["svn"], extra={"platform": doc["platform"], "issued_at": doc["issued_at"]},
    )
