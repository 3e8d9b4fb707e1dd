"""Where the gateway's data keys come from.

``ServiceKeySource`` takes them from the key service in a TEE over attested TLS
(``cloakgate_keys.client``): the service's evidence is verified before a byte is sent, the gateway
proves its own TEE, and released keys live in memory only. ``ring()`` may block on the network: the
gateway calls it at start-up and from a worker thread, and requests only read the snapshot it
returns, so a request costs no call to the key service.

``DevKeySource`` is the development key ring: a random root secret in a file created on first run
with mode 0600, from which each pack's data key is derived. It is labelled DEVELOPMENT wherever
status shows.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
import itertools
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .core.errors import KeyUnavailable
from .core.keyring import DataKey, EmptyKeyRing, StaticKeyRing
from .core.tokens import B32

logger = logging.getLogger("cloakgate")
_generations = itertools.count(1)


class KeySource(Protocol):
    label: str

    def ring(self, packs: Iterable[str]) -> StaticKeyRing: ...

    def status(self) -> dict[str, Any]: ...


class DevKeySource:
    label = "DEVELOPMENT"

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        self._root: bytes | None = None
        self._memo: tuple[frozenset[str], StaticKeyRing] | None = None

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
        wanted = frozenset(packs)
        if self._memo is not None and self._memo[0] == wanted:
            return self._memo[1]
        try:
            root = self._load_root()
        except KeyUnavailable:
            return EmptyKeyRing()
        keys = []
        taken: set[str] = set()
        for pack in sorted(wanted):
            material = HKDF(
                algorithm=hashes.SHA256(), length=32, salt=None, info=f"cloakgate/dev/datakey/{pack}/1".encode()
            ).derive(root)
            kid = self._kid(root, pack, 1, taken)
            taken.add(kid)
            keys.append(DataKey(kid, pack, 1, material))
        ring = StaticKeyRing(keys, generation=next(_generations))
        self._memo = (wanted, ring)
        return ring

    def status(self) -> dict[str, Any]:
        return {"source": "dev", "label": self.label, "file": str(self.path), "tee": "none (DEVELOPMENT keys)"}


class ServiceKeySource:
    """Data keys released by the key service; the ring holds every live version of every pack."""

    def __init__(self, client: Any):  # cloakgate_keys.client.KeyClient
        self.client = client
        self._last: tuple[tuple[str, bytes], ...] | None = None
        self._ring: StaticKeyRing = EmptyKeyRing()
        self._started = False

    @property
    def label(self) -> str:
        return "KEY SERVICE (SIMULATED TEE)" if self.client.status().get("SIMULATED") else "KEY SERVICE"

    def ring(self, packs: Iterable[str]) -> StaticKeyRing:
        """A snapshot of the released keys; the same object while nothing changed (reveal caches stay)."""
        from cloakgate_keys.client import KeyServiceUnavailable

        keys: list[DataKey] = []
        for pack in sorted(set(packs)):
            try:
                released = self.client.keys_for(pack)
            except KeyServiceUnavailable as e:
                # At start-up a warning: mitmdump exits on any start-up error, and a gateway that runs
                # with no keys still fails closed and keeps retrying. Later an error.
                (logger.error if self._started else logger.warning)(
                    "cloakgate keys: no keys for pack %s (%s); its routes fail closed", pack, e.code)
                continue
            keys += [DataKey(k.kid, k.pack, k.version, k.material) for k in released]
        self._started = True
        fingerprint = tuple((k.kid, k.material) for k in keys)
        if fingerprint != self._last:
            self._last = fingerprint
            self._ring = StaticKeyRing(keys, generation=next(_generations))
        return self._ring

    def status(self) -> dict[str, Any]:
        st = self.client.status()
        return {"source": "service", "label": self.label, **{k: v for k, v in st.items() if k != "errors"}}


def service_source(url: str, *, measurements: Iterable[str], signers: Iterable[str], allow_simulated: bool,
                   sim_platform: str | None, tee: str, tee_measurement: str) -> ServiceKeySource:
    """A key source for the key service at ``url``, with the gateway's own evidence provider."""
    from cloakgate_keys.attestation.providers import GramineProvider, SimulatedProvider, TsmProvider
    from cloakgate_keys.attestation.simulated import SimulatedPlatform
    from cloakgate_keys.client import KeyClient, ServicePolicy

    policy = ServicePolicy(
        measurements=frozenset(m.lower() for m in measurements), signers=frozenset(s.lower() for s in signers),
        allow_simulated=allow_simulated, sim_platform_dir=sim_platform,
    )
    if tee == "simulated":
        if not sim_platform:
            raise ValueError("a simulated gateway needs cloakgate_sim_platform")
        provider: Any = SimulatedProvider(SimulatedPlatform.load(sim_platform), measurement=tee_measurement)
    elif tee == "gramine":
        provider = GramineProvider()
    elif tee == "tsm":
        provider = TsmProvider()
    else:
        raise ValueError(f"unknown gateway TEE {tee!r}")
    return ServiceKeySource(KeyClient(url, service_policy=policy, evidence_provider=provider))
