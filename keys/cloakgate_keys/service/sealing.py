"""Sealing: AES-256-GCM under a key only the same TEE identity can derive.

Where the sealing key comes from (see ``tee``):
- simulated: HKDF of the simulated platform secret and the service's measurement;
- Gramine (SGX): ``/dev/attestation/keys/_sgx_mrenclave`` (the EGETKEY MRENCLAVE sealing key, 16 bytes,
  Gramine >= 1.5), expanded with HKDF. Gramine warns against using one key both for an encrypted-files
  mount and for the application's own crypto: mount the state dir with ``key_name = "_sgx_mrsigner"``
  (or a provisioned key) if you also want it in encrypted files;
- SNP/TDX: a 32-byte derived key handed to the service in a file (e.g. on tmpfs by the launcher from
  SNP_GET_DERIVED_KEY; TDX 1.0 has no hardware sealing key, so a key released by a KBS after attestation).

Blob layout: ``b"CGSEAL01" || 12-byte nonce || ciphertext+tag``; associated data = magic || label, so a
blob sealed for one purpose cannot be unsealed as another.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import StateError

MAGIC = b"CGSEAL01"


def expand(ikm: bytes, info: str, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info.encode()).derive(ikm)


class Aead:
    """A sealing/wrapping key handle: AES-256-GCM with per-blob labels. Never printed."""

    def __init__(self, key: bytes):
        if len(key) != 32:
            raise ValueError("AES-256 key must be 32 bytes")
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "Aead(<hidden>)"

    def __reduce__(self) -> Any:
        raise TypeError("key handles cannot be pickled")

    def seal(self, label: str, plaintext: bytes) -> bytes:
        nonce = os.urandom(12)
        return MAGIC + nonce + self._aead.encrypt(nonce, plaintext, MAGIC + label.encode())

    def unseal(self, label: str, blob: bytes) -> bytes:
        if len(blob) < len(MAGIC) + 12 + 16 or blob[: len(MAGIC)] != MAGIC:
            raise StateError("unseal")
        nonce, ct = blob[len(MAGIC): len(MAGIC) + 12], blob[len(MAGIC) + 12:]
        try:
            return self._aead.decrypt(nonce, ct, MAGIC + label.encode())
        except InvalidTag as e:
            raise StateError("unseal") from e


def gramine_sealing_key(root: str | os.PathLike[str] = "/dev/attestation") -> bytes:
    raw = (Path(root) / "keys" / "_sgx_mrenclave").read_bytes()
    if len(raw) != 16:
        raise StateError("sealing_key")
    return expand(raw, "cloakgate/v1/seal/gramine/_sgx_mrenclave")


def file_sealing_key(path: str | os.PathLike[str]) -> bytes:
    raw = Path(path).read_bytes()
    if len(raw) != 32:
        raise StateError("sealing_key")
    return expand(raw, "cloakgate/v1/seal/derived")


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (mode 0600) through a temporary file and rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
