"""Data keys and the key ring the core works against.

A ``DataKey`` is a handle: 32 bytes of material for one rule pack and version, named by a key id
that travels in tokens. It refuses to be printed or pickled. Subkeys per scheme are derived with
HKDF-SHA256 once and cached on the handle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import KeyUnavailable
from .tokens import is_kid

T = TypeVar("T")
SUBKEY_LEN = {"aead": 32, "deterministic": 64, "words": 64, "email": 64, "fpe": 32}


@dataclass(frozen=True, eq=False)
class DataKey:
    kid: str
    pack: str
    version: int
    material: bytes = field(repr=False)
    _sub: dict[str, bytes] = field(default_factory=dict, repr=False, compare=False)
    _prims: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not is_kid(self.kid):
            raise ValueError("key id must be 3 base32 characters")
        if len(self.material) != 32:
            raise ValueError("data key material must be 32 bytes")

    def subkey(self, purpose: str) -> bytes:
        k = self._sub.get(purpose)
        if k is None:
            k = HKDF(
                algorithm=hashes.SHA256(),
                length=SUBKEY_LEN[purpose],
                salt=None,
                info=b"cloakgate/v1/subkey/" + purpose.encode(),
            ).derive(self.material)
            self._sub[purpose] = k
        return k

    def primitive(self, purpose: str) -> Any:
        """The AEAD object for a purpose (AESGCM for aead, AESSIV otherwise), built once per key."""
        p = self._prims.get(purpose)
        if p is None:
            p = AESGCM(self.subkey(purpose)) if purpose == "aead" else AESSIV(self.subkey(purpose))
            self._prims[purpose] = p
        return p

    def cached(self, slot: str, build: Callable[[], T]) -> T:
        """Per-key state built once (a cipher, a token cache): it lives and dies with this handle."""
        v = self._prims.get(slot)
        if v is None:
            v = self._prims[slot] = build()
        return v

    def __repr__(self) -> str:
        return f"DataKey(kid={self.kid!r}, pack={self.pack!r}, version={self.version})"

    def __reduce__(self):  # noqa: ANN204 - refuse pickling
        raise TypeError("DataKey cannot be pickled")


class KeyRing(Protocol):
    """What the core needs: the primary key of a pack, and any key by id."""

    def primary(self, pack: str) -> DataKey:
        """The key new tokens of ``pack`` are made with. Raises KeyUnavailable."""
        ...

    def lookup(self, kid: str) -> DataKey | None: ...

    @property
    def generation(self) -> int:
        """Changes whenever the set of keys changes (caches of revealed values key on it)."""
        ...


class StaticKeyRing:
    """An in-memory key ring: the highest version of each pack is its primary."""

    def __init__(self, keys: Iterable[DataKey] = (), *, generation: int = 0):
        self._by_kid: dict[str, DataKey] = {}
        self._primary: dict[str, DataKey] = {}
        for k in keys:
            if k.kid in self._by_kid:
                raise ValueError("duplicate key id")
            self._by_kid[k.kid] = k
            cur = self._primary.get(k.pack)
            if cur is None or k.version > cur.version:
                self._primary[k.pack] = k
        self._generation = generation

    def primary(self, pack: str) -> DataKey:
        k = self._primary.get(pack)
        if k is None:
            raise KeyUnavailable(f"no data key for pack {pack}")
        return k

    def lookup(self, kid: str) -> DataKey | None:
        return self._by_kid.get(kid)

    @property
    def generation(self) -> int:
        return self._generation

    def keys(self) -> list[DataKey]:
        return list(self._by_kid.values())


class EmptyKeyRing(StaticKeyRing):
    """No keys at all: every protected route fails closed."""
