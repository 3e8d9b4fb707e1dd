"""The gateway's key service client.

1. Connects with TLS 1.3 and, before sending a single request byte, verifies the service's RA-TLS
   certificate: its evidence, the binding of that evidence to the peer's public key, and the
   gateway's ``ServicePolicy`` (TEE types, measurements or signer, debug, TCB, simulated).
2. Proves its own TEE (``/auth`` nonce, ``/attest`` with evidence binding nonce and an ephemeral
   X25519 key) and receives each pack's key versions wrapped to that key.
3. Caches keys in memory only, until the TTL the service gave. From ``refresh_fraction`` of the TTL
   on, a call (or ``maybe_refresh`` from a timer thread) refreshes ahead of expiry; failures back off
   exponentially. In steady state a call costs nothing. Once the cache has expired and the service
   cannot be reached, ``keys_for`` raises ``KeyServiceUnavailable``: protected routes fail closed.

Thread-safe; blocking (the gateway calls it from a worker thread).
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from .attestation.claims import Claims
from .attestation.providers import EvidenceProvider, ProviderError
from .service import evidence as ev
from .service import ratls
from .service.protocol import keys_aad, runtime_report_data
from .service.wrap import UnwrapError, b64u, public_jwk, unb64u, unwrap

PACK_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
KID_ALPHABET = frozenset("abcdefghijklmnopqrstuvwxyz234567")
MAX_RESPONSE = 1 << 20
MAX_TTL = 86400


class KeyServiceUnavailable(Exception):
    """No usable keys: the service is unreachable, refused, or refused us. ``code`` says which."""

    default_code = "cloakgate_keys.client.unavailable"

    def __init__(self, code: str | None = None):
        self.code = code or self.default_code
        super().__init__(self.code)


class ServiceRejected(KeyServiceUnavailable):
    """The service's attestation did not satisfy the gateway's policy; nothing was sent to it."""

    default_code = "cloakgate_keys.client.service_rejected"


class ReleaseDenied(KeyServiceUnavailable):
    """The service refused to release keys to this gateway (evidence, binding or release policy)."""

    default_code = "cloakgate_keys.client.release_denied"


@dataclass(frozen=True, eq=False)
class ReleasedKey:
    kid: str
    pack: str
    version: int
    primary: bool
    material: bytes = field(repr=False)

    def __repr__(self) -> str:
        return (f"ReleasedKey(kid={self.kid!r}, pack={self.pack!r}, version={self.version}, "
                f"primary={self.primary})")

    def __reduce__(self) -> Any:
        raise TypeError("ReleasedKey cannot be pickled")


@dataclass(frozen=True)
class ServicePolicy:
    """What the gateway accepts as a key service. Fail closed: with neither ``measurements`` nor
    ``signers`` nothing is accepted; simulated and debug services only when explicitly allowed."""

    tees: frozenset[str] = frozenset({"sgx", "tdx", "snp"})
    measurements: frozenset[str] = frozenset()
    signers: frozenset[str] = frozenset()
    min_svn: int = 0
    allow_simulated: bool = False
    allow_debug: bool = False
    accepted_tcb: frozenset[str] | None = None  # None: the verifier's default (UpToDate)
    sim_platform_key: bytes | None = field(default=None, repr=False)
    sim_platform_dir: str | None = None
    verifier_options: Mapping[str, Any] = field(default_factory=dict)

    def verifier(self) -> ev.VerifierConfig:
        return ev.VerifierConfig(allow_simulated=self.allow_simulated, sim_platform_key=self.sim_platform_key,
                                 sim_platform_dir=self.sim_platform_dir, allow_debug=self.allow_debug,
                                 accepted_tcb=self.accepted_tcb, options=self.verifier_options)

    def check(self, claims: Claims) -> None:
        tees = set(self.tees) | ({"simulated"} if self.allow_simulated else set())
        if claims.tee not in tees or (claims.simulated and not self.allow_simulated):
            raise ServiceRejected("cloakgate_keys.client.service_rejected.tee")
        if claims.debug and not self.allow_debug:
            raise ServiceRejected("cloakgate_keys.client.service_rejected.debug")
        if self.accepted_tcb is not None and claims.tcb_status not in self.accepted_tcb:
            raise ServiceRejected("cloakgate_keys.client.service_rejected.tcb")
        by_measurement = claims.measurement in self.measurements
        by_signer = claims.signer is not None and claims.signer in self.signers and (
            claims.svn or 0) >= self.min_svn
        if not (by_measurement or by_signer):
            raise ServiceRejected("cloakgate_keys.client.service_rejected.identity")


def _client_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the RA-TLS certificate is verified by hand before any request
    return ctx


class VerifiedConnection:
    """One TLS connection to a key service whose RA-TLS certificate passed the policy."""

    def __init__(self, url: str, policy: ServicePolicy, *, now: datetime, timeout: float = 5.0):
        u = urlsplit(url)
        if u.scheme != "https" or not u.hostname:
            raise ValueError("key service URL must be https://host[:port]")
        host, port = u.hostname, u.port or 443
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as e:
            raise KeyServiceUnavailable("cloakgate_keys.client.connect") from e
        try:
            tls = _client_context().wrap_socket(sock)
        except (OSError, ssl.SSLError) as e:
            sock.close()
            raise KeyServiceUnavailable("cloakgate_keys.client.tls") from e
        try:
            self.claims = self._verify_peer(tls, policy, now)
        except BaseException:
            tls.close()
            raise
        self._conn = http.client.HTTPConnection(host, port, timeout=timeout)
        self._conn.sock = tls

    @staticmethod
    def _verify_peer(tls: ssl.SSLSocket, policy: ServicePolicy, now: datetime) -> Claims:
        der = tls.getpeercert(binary_form=True)
        if tls.version() != "TLSv1.3" or not der:
            raise ServiceRejected("cloakgate_keys.client.service_rejected.tls")
        try:
            parsed = ratls.parse_certificate(der)
            claims = ev.verify(policy.verifier(), parsed.kind, parsed.data, parsed.aux, now=now)
            ratls.check_binding(parsed, claims)
        except ratls.RatlsError as e:
            reason = e.code.rsplit(".", 1)[-1]
            raise ServiceRejected(f"cloakgate_keys.client.service_rejected.{reason}") from e
        except ev.EvidenceRejected as e:
            raise ServiceRejected(f"cloakgate_keys.client.service_rejected.{e.reason}") from e
        policy.check(claims)
        return claims

    def request(self, method: str, path: str, body: Mapping[str, Any] | None = None,
                headers: Mapping[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        data = None if body is None else json.dumps(body).encode()
        h = {"Content-Type": "application/json", **(headers or {})}
        try:
            self._conn.request(method, path, body=data, headers=h)
            resp = self._conn.getresponse()
            n = int(resp.getheader("Content-Length") or "0")
            if n > MAX_RESPONSE:
                raise KeyServiceUnavailable("cloakgate_keys.client.protocol")
            raw = resp.read(n)
            obj = json.loads(raw) if raw else {}
        except (OSError, http.client.HTTPException, ValueError) as e:
            raise KeyServiceUnavailable("cloakgate_keys.client.io") from e
        if not isinstance(obj, dict):
            raise KeyServiceUnavailable("cloakgate_keys.client.protocol")
        return resp.status, obj

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> VerifiedConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_Release = tuple[tuple[ReleasedKey, ...], int]  # keys, primary first; TTL in seconds


@dataclass(frozen=True)
class _Entry:
    keys: tuple[ReleasedKey, ...]
    fetched: float
    refresh_at: float
    expires: float


def _parse_release(plain: bytes, pack: str) -> _Release:
    doc = json.loads(plain)
    ttl = doc["ttl"]
    if doc["pack"] != pack or not isinstance(ttl, int) or isinstance(ttl, bool) or not 1 <= ttl <= MAX_TTL:
        raise ValueError("bad release")
    keys = []
    for k in doc["keys"]:
        kid, version, primary, material = k["kid"], k["version"], k["primary"], unb64u(k["material"])
        if not (isinstance(kid, str) and len(kid) == 3 and set(kid) <= KID_ALPHABET):
            raise ValueError("bad kid")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ValueError("bad version")
        if not isinstance(primary, bool) or len(material) != 32:
            raise ValueError("bad key")
        keys.append(ReleasedKey(kid, pack, version, primary, material))
    keys.sort(key=lambda k: k.version, reverse=True)
    if (not keys or not keys[0].primary or sum(k.primary for k in keys) != 1
            or len({k.kid for k in keys}) != len(keys)):
        raise ValueError("bad key set")
    return tuple(keys), ttl


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat()


class KeyClient:
    def __init__(self, url: str, *, service_policy: ServicePolicy, evidence_provider: EvidenceProvider,
                 now: Callable[[], float] = time.time, timeout: float = 5.0, refresh_fraction: float = 0.75,
                 backoff_initial: float = 1.0, backoff_max: float = 60.0):
        if not 0 < refresh_fraction <= 1:
            raise ValueError("refresh_fraction must be in (0, 1]")
        self.url, self.policy, self.provider = url, service_policy, evidence_provider
        self._now, self.timeout, self.refresh_fraction = now, timeout, refresh_fraction
        self.backoff_initial, self.backoff_max = backoff_initial, backoff_max
        self._lock = threading.Lock()
        self._fetch_lock = threading.Lock()
        self._cache: dict[str, _Entry] = {}
        self._service: Claims | None = None
        self._last_refresh: float | None = None
        self._last_error: KeyServiceUnavailable | None = None
        self._errors: list[tuple[float, str]] = []
        self._failures = 0
        self._next_attempt = 0.0

    # -- public API ---------------------------------------------------------------------------------
    def keys_for(self, pack: str) -> tuple[ReleasedKey, ...]:
        """Live key versions of ``pack``, primary first. Raises ``KeyServiceUnavailable``."""
        if not PACK_RE.match(pack):
            raise ValueError("invalid pack name")
        t = self._now()
        with self._lock:
            e = self._cache.get(pack)
            if e is not None and t < e.refresh_at:
                return e.keys
            may_try = t >= self._next_attempt
        if may_try:
            valid = e is not None and t < e.expires
            if self._fetch_lock.acquire(blocking=not valid):
                try:
                    self._fetch_due([pack], t)
                except KeyServiceUnavailable:
                    pass  # recorded; fall back to the cache below
                finally:
                    self._fetch_lock.release()
        with self._lock:
            e = self._cache.get(pack)
            if e is not None and self._now() < e.expires:
                return e.keys
            err = self._last_error
        raise type(err)(err.code) if err is not None else KeyServiceUnavailable()

    def primary(self, pack: str) -> ReleasedKey:
        return self.keys_for(pack)[0]

    def lookup(self, kid: str) -> ReleasedKey | None:
        """A cached, unexpired key by id (no network)."""
        t = self._now()
        with self._lock:
            for e in self._cache.values():
                if t < e.expires:
                    for k in e.keys:
                        if k.kid == kid:
                            return k
        return None

    def refresh(self, packs: Iterable[str] | None = None) -> None:
        """Fetch ``packs`` (default: every cached pack) now, ignoring backoff. Raises on failure."""
        with self._lock:
            wanted = list(packs) if packs is not None else list(self._cache)
        for p in wanted:
            if not PACK_RE.match(p):
                raise ValueError("invalid pack name")
        with self._fetch_lock:
            self._fetch(wanted)

    def maybe_refresh(self) -> bool:
        """Refresh the packs that are due, unless backing off. For a timer thread; never raises.
        Returns True when a fetch happened and succeeded."""
        t = self._now()
        with self._lock:
            if t < self._next_attempt:
                return False
            due = [p for p, e in self._cache.items() if t >= e.refresh_at]
        if not due or not self._fetch_lock.acquire(blocking=False):
            return False
        try:
            return self._fetch_due(due, t)
        except KeyServiceUnavailable:
            return False
        finally:
            self._fetch_lock.release()

    def status(self) -> dict[str, Any]:
        with self._lock:
            s = self._service
            return {
                "url": self.url,
                "tee": s.tee if s else None,
                "measurement": s.measurement if s else None,
                "signer": s.signer if s else None,
                "svn": s.svn if s else None,
                "tcb_status": s.tcb_status if s else None,
                "debug": s.debug if s else None,
                "SIMULATED": bool(s and s.simulated),
                "last_refresh": _iso(self._last_refresh),
                "last_error": self._last_error.code if self._last_error else None,
                "consecutive_failures": self._failures,
                "next_attempt": _iso(self._next_attempt) if self._failures else None,
                "errors": [{"at": _iso(t), "code": c} for t, c in self._errors],
                "packs": {p: {"primary": e.keys[0].kid, "kids": [k.kid for k in e.keys],
                              "expires": _iso(e.expires)} for p, e in sorted(self._cache.items())},
            }

    # -- fetching -----------------------------------------------------------------------------------
    def _fetch_due(self, packs: list[str], t: float) -> bool:
        """Under the fetch lock: fetch ``packs`` plus other due packs, unless another thread already did."""
        with self._lock:
            due = {p for p, e in self._cache.items() if t >= e.refresh_at}
            need = [p for p in packs if p not in self._cache or self._now() >= self._cache[p].refresh_at]
            if not need:
                return True
            wanted = sorted(set(need) | due)
        self._fetch(wanted)
        return True

    def _fetch(self, packs: list[str]) -> None:
        t = self._now()
        try:
            released, claims = self._exchange(packs, datetime.fromtimestamp(t, UTC))
        except KeyServiceUnavailable as e:
            self._record_failure(e)
            raise
        except (ProviderError, UnwrapError, ValueError, KeyError, TypeError) as e:
            err = KeyServiceUnavailable("cloakgate_keys.client.protocol")
            self._record_failure(err)
            raise err from e
        with self._lock:
            for p, (keys, ttl) in released.items():
                self._cache[p] = _Entry(keys, t, t + ttl * self.refresh_fraction, t + ttl)
            self._service, self._last_refresh = claims, t
            self._failures, self._next_attempt, self._last_error = 0, 0.0, None

    def _record_failure(self, err: KeyServiceUnavailable) -> None:
        t = self._now()
        with self._lock:
            self._failures += 1
            delay = min(self.backoff_max, self.backoff_initial * 2 ** (self._failures - 1))
            self._next_attempt = t + delay
            self._last_error = err
            self._errors = (self._errors + [(t, err.code)])[-10:]

    def _exchange(self, packs: list[str], now: datetime) -> tuple[dict[str, _Release], Claims]:
        with VerifiedConnection(self.url, self.policy, now=now, timeout=self.timeout) as conn:
            eph = X25519PrivateKey.generate()
            status, r = conn.request("POST", "/auth", {"version": "1", "tee": self.provider.tee})
            _expect(status, r)
            runtime = {"nonce": r["nonce"], "tee-pubkey": public_jwk(eph.public_key())}
            evidence = self.provider.evidence(runtime_report_data(runtime))
            tee_evidence = {"kind": evidence.kind, "data": b64u(evidence.data)}
            if evidence.aux:
                tee_evidence["aux"] = b64u(evidence.aux)
            attest = {"runtime-data": runtime, "tee-evidence": tee_evidence}
            status, r = conn.request("POST", "/attest", attest)
            _expect(status, r)
            session = r["session"]
            if not isinstance(session, str):
                raise ValueError("bad session")
            out = {}
            bearer = {"Authorization": f"Bearer {session}"}
            for pack in packs:
                status, r = conn.request("GET", f"/keys/{pack}", headers=bearer)
                _expect(status, r)
                plain = unwrap(eph, r["wrapped"], keys_aad(session, pack))
                out[pack] = _parse_release(plain, pack)
            return out, conn.claims


def _expect(status: int, body: Mapping[str, Any]) -> None:
    if status == 200:
        return
    code = body.get("error")
    code = code if isinstance(code, str) and len(code) < 100 else None
    if status in (401, 403):
        raise ReleaseDenied(code)
    raise KeyServiceUnavailable(code or f"cloakgate_keys.client.http_{status}")
