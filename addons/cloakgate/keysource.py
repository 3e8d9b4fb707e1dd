"""Where the gateway's data keys come from.

``DevKeySource`` is the development key ring: a random root secret in a file created on first run
with mode 0600, from which each pack's data key is derived. It is labelled DEVELOPMENT wherever
status shows. Production keys come from the key service (cloakgate_keys.client) over attested TLS.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .core.errors import KeyUnavailable
from .core.keyring import DataKey, EmptyKeyRing, StaticKeyRing
from .core.tokens import B32


class DevKeySource:
    label = "DEVELOPMENT"

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        self._root: bytes | None = None
        self._generation = 0

    def _load_root(self) -> bytes:
        if self._root is not None:
            return self._root
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            st = self.path.stat()
            if stat.S_IMODE(st.st_mode) & 0o077:
                raise KeyUnavailable("development key ring file is readable by others (want mode 0600)")
            try:
                doc = json.loads(self.path.read_text("ascii"))
                root = base64.b64decode(doc["root"], validate=True)
            except (ValueError, KeyError, TypeError, OSError):
                raise KeyUnavailable("development key ring file is unreadable") from None
            if len(root) != 32:
                raise KeyUnavailable("development key ring file is unreadable")
        else:
            root = os.urandom(32)
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                json.dump({"kind": "cloakgate development key ring", "root": base64.b64encode(root).decode()}, fh)
        self._root = root
        return root

    def _kid(self, root: bytes, pack: str, version: int, taken: set[str]) -> str:
        for counter in range(1000):
            mac = hmac.new(root, f"kid/{pack}/{version}/{counter}".encode(), hashlib.sha256).digest()
            n = int.from_bytes(mac[:2], "big") >> 1  # 15 bits
            kid = B32[(n >> 10) & 31] + B32[(n >> 5) & 31] + B32[n & 31]
            if kid not in taken:
                return kid
        raise KeyUnavailable("cannot assign a key id")

    def ring(self, packs: Iterable[str]) -> StaticKeyRing:
        try:
            root = self._load_root()
        except KeyUnavailable:
            return EmptyKeyRing()
        keys = []
        taken: set[str] = set()
        for pack in sorted(set(packs)):
            material = HKDF(
                algorithm=hashes.SHA256(), length=32, salt=None, info=f"cloakgate/dev/datakey/{pack}/1".encode()
            ).derive(root)
            kid = self._kid(root, pack, 1, taken)
            taken.add(kid)
            keys.append(DataKey(kid, pack, 1, material))
        self._generation += 1
        return StaticKeyRing(keys, generation=self._generation)

    def status(self) -> dict[str, Any]:
        return {"source": "dev", "label": self.label, "file": str(self.path), "tee": "none (DEVELOPMENT keys)"}
