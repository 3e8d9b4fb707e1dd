"""The state directory: master key sealed to the TEE, key store and custodians sealed under the master key.

Layout (all files 0600, written atomically)::

    service.json     non-secret: format, tee, created
    master.sealed    the 32-byte master key, AES-GCM under the TEE sealing key
    keystore.sealed  data keys (per pack and version) and the release policy, AES-GCM under
                     HKDF(master, "cloakgate/v1/keystore")
    custodians.sealed TOTP secrets, last used steps, rate-limit counters, under HKDF(master, ".../custodians")
    audit.jsonl      hash-chained audit records, no secrets

The master key is generated inside the service (``initialize``) and never leaves it unsealed.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .audit import AuditLog
from .custodians import CustodianBook
from .errors import Conflict, StateError
from .policy import DENY_ALL, Policy
from .sealing import Aead, expand, write_atomic
from .store import KeyStore

FORMAT = "cloakgate-keys-state/1"
SERVICE = "service.json"
MASTER = "master.sealed"
KEYSTORE = "keystore.sealed"
CUSTODIANS = "custodians.sealed"
AUDIT = "audit.jsonl"


class ServiceState:
    """The unsealed state of a running service. Mutations go through ``lock`` and ``save_*``."""

    def __init__(self, directory: Path, master: bytes, keystore: KeyStore, custodians: CustodianBook,
                 meta: Mapping[str, Any]):
        self.directory = directory
        self._keystore_aead = Aead(expand(master, "cloakgate/v1/keystore"))
        self._custodian_aead = Aead(expand(master, "cloakgate/v1/custodians"))
        self.keystore, self.custodians, self.meta = keystore, custodians, dict(meta)
        self.audit = AuditLog(directory / AUDIT)
        self.lock = threading.RLock()

    def __repr__(self) -> str:
        return f"ServiceState({str(self.directory)!r})"

    @classmethod
    def initialize(cls, directory: str | os.PathLike[str], sealer: Aead, *, tee: str, custodians: int,
                   threshold: int, packs: Iterable[str] = (), policy: Policy = DENY_ALL, now: float,
                   service_name: str = "key-service") -> tuple[ServiceState, list[str]]:
        """Create the master key, enroll custodians, create version 1 of each pack.

        Returns the state and the custodians' otpauth URIs, which exist nowhere else in plaintext:
        show them once."""
        d = Path(directory)
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        if (d / MASTER).exists() or (d / SERVICE).exists():
            raise Conflict("already_initialized")
        book, uris = CustodianBook.enroll(custodians, threshold, service_name=service_name)
        store = KeyStore(policy=policy)
        for p in packs:
            store.rotate(p, now)
        master = secrets.token_bytes(32)
        meta = {"format": FORMAT, "tee": tee, "created": datetime.fromtimestamp(now, UTC).isoformat()}
        write_atomic(d / MASTER, sealer.seal("cloakgate/v1/master", master))
        state = cls(d, master, store, book, meta)
        state.save_keystore()
        state.save_custodians()
        write_atomic(d / SERVICE, json.dumps(meta, indent=2).encode() + b"\n")
        state.audit.record("init", ok=True, now=now, tee=tee, custodians=custodians, threshold=threshold,
                           packs=store.packs(), kids=[v.kid for p in store.packs() for v in store.live(p)])
        return state, uris

    @classmethod
    def open(cls, directory: str | os.PathLike[str], sealer: Aead, *, tee: str) -> ServiceState:
        d = Path(directory)
        try:
            meta = json.loads((d / SERVICE).read_text())
            sealed = (d / MASTER).read_bytes()
            ks_blob, cu_blob = (d / KEYSTORE).read_bytes(), (d / CUSTODIANS).read_bytes()
        except (OSError, ValueError) as e:
            raise StateError("not_initialized") from e
        if meta.get("format") != FORMAT or meta.get("tee") != tee:
            raise StateError("tee_mismatch")
        master = sealer.unseal("cloakgate/v1/master", sealed)
        if len(master) != 32:
            raise StateError("unseal")
        ks_aead = Aead(expand(master, "cloakgate/v1/keystore"))
        cu_aead = Aead(expand(master, "cloakgate/v1/custodians"))
        try:
            store = KeyStore.from_json(json.loads(ks_aead.unseal(KEYSTORE, ks_blob)))
            book = CustodianBook.from_json(json.loads(cu_aead.unseal(CUSTODIANS, cu_blob)))
        except (KeyError, TypeError, ValueError) as e:
            raise StateError("state_format") from e
        return cls(d, master, store, book, meta)

    def save_keystore(self) -> None:
        blob = json.dumps(self.keystore.to_json()).encode()
        write_atomic(self.directory / KEYSTORE, self._keystore_aead.seal(KEYSTORE, blob))

    def save_custodians(self) -> None:
        blob = json.dumps(self.custodians.to_json()).encode()
        write_atomic(self.directory / CUSTODIANS, self._custodian_aead.seal(CUSTODIANS, blob))
