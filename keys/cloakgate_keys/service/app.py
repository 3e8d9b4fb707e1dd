"""The key service protocol, without sockets: ``Request`` in, ``Response`` out, time injected.

Endpoints (JSON bodies, errors as ``{"error": <code>}`` with the code's HTTP status):

- ``GET /health`` → ``{"ok": true, "tee", "measurement", "SIMULATED"}``
- ``POST /auth`` ``{"version": "1", "tee": <kind>}`` → ``{"nonce", "expires_in"}`` (single use)
- ``POST /attest`` ``{"runtime-data": {"nonce", "tee-pubkey": X25519 JWK},
  "tee-evidence": {"kind", "data": b64url, "aux"?: b64url}}`` → ``{"session", "expires_in"}``
  after evidence, binding (``protocol.runtime_report_data``) and release policy all pass
- ``GET /keys/<pack>`` with ``Authorization: Bearer <session>`` → ``{"pack", "wrapped"}``: the
  envelope (``wrap``) holds ``{"pack", "ttl", "keys": [{"kid", "version", "primary", "material"}]}``
  wrapped to the session's ``tee-pubkey`` with AAD ``protocol.keys_aad(session, pack)``
- ``POST /admin/rotate`` ``{"pack", "codes"}``, ``/admin/retire`` ``{"pack", "kid", "codes"}``,
  ``/admin/policy`` ``{"policy", "codes"}``, ``/admin/backup`` ``{"recipient": b64url X25519, "codes"}``;
  ``codes`` = ``{custodian id: TOTP code}`` from at least ``threshold`` custodians.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from ..attestation.claims import Claims
from . import evidence as ev
from .custodians import QuorumRefused
from .errors import BadRequest, Busy, Denied, NotFound, ServiceError, Unauthorized
from .policy import PolicyError, parse_policy
from .protocol import BACKUP_AAD, KEYS_PREFIX, canonical, keys_aad, runtime_report_data
from .state import ServiceState
from .store import check_pack, is_kid
from .wrap import b64u, public_from_jwk, unb64u, wrap

log = logging.getLogger("cloakgate_keys.service")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: Mapping[str, str]  # lower-case names
    body: bytes = b""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes

    @classmethod
    def json(cls, status: int, obj: Any) -> Response:
        return cls(status, json.dumps(obj, separators=(",", ":")).encode())


@dataclass(frozen=True)
class _Session:
    pubkey: X25519PublicKey
    claims: Claims
    expires: float


def _b64_field(obj: Mapping[str, Any], name: str, *, required: bool = True) -> bytes:
    v = obj.get(name)
    if v is None and not required:
        return b""
    try:
        return unb64u(v)
    except (ValueError, TypeError) as e:
        raise BadRequest(name) from e


class KeyServiceApp:
    def __init__(self, state: ServiceState, *, verifier: ev.VerifierConfig, info: Mapping[str, Any],
                 clock: Callable[[], float] = time.time, key_ttl: int = 300, nonce_ttl: int = 30,
                 session_ttl: int = 60, max_pending: int = 4096):
        self.state, self.verifier, self.info = state, verifier, dict(info)
        self.clock, self.key_ttl, self.nonce_ttl, self.session_ttl = clock, key_ttl, nonce_ttl, session_ttl
        self.max_pending = max_pending
        self._nonces: dict[str, float] = {}
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()

    # -- dispatch -------------------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        try:
            return self._route(req)
        except ServiceError as e:
            return Response.json(e.status_hint, {"error": e.code})
        except Exception as e:  # never leak details, not even to the log: the type only
            log.error("internal error (%s) on %s", type(e).__name__, req.method)
            return Response.json(500, {"error": "cloakgate_keys.service.internal"})

    def _route(self, req: Request) -> Response:
        m, p = req.method, req.path.split("?", 1)[0]
        if m == "GET" and p == "/health":
            return Response.json(200, {"ok": True, **self.info})
        if m == "POST" and p == "/auth":
            return self._auth(self._body(req))
        if m == "POST" and p == "/attest":
            return self._attest(self._body(req))
        if m == "GET" and p.startswith(KEYS_PREFIX):
            return self._keys(req, p[len(KEYS_PREFIX):])
        if m == "POST" and p.startswith("/admin/"):
            op = p[len("/admin/"):]
            handler = {"rotate": self._rotate, "retire": self._retire, "policy": self._policy,
                       "backup": self._backup}.get(op)
            if handler is not None:
                return self._admin(op, self._body(req), handler)
        raise NotFound("route")

    @staticmethod
    def _body(req: Request) -> dict[str, Any]:
        try:
            obj = json.loads(req.body)
        except (ValueError, RecursionError) as e:
            raise BadRequest("json") from e
        if not isinstance(obj, dict):
            raise BadRequest("json")
        return obj

    def _now_dt(self, now: float) -> datetime:
        return datetime.fromtimestamp(now, UTC)

    def _purge(self, now: float) -> None:
        for n in [n for n, exp in self._nonces.items() if exp <= now]:
            del self._nonces[n]
        for t in [t for t, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[t]

    # -- client challenge -----------------------------------------------------------------------
    def _auth(self, body: dict[str, Any]) -> Response:
        if body.get("version") != "1" or not isinstance(body.get("tee"), str):
            raise BadRequest("auth")
        now = self.clock()
        nonce = b64u(secrets.token_bytes(32))
        with self._lock:
            self._purge(now)
            if len(self._nonces) >= self.max_pending:
                raise Busy("nonces")
            self._nonces[nonce] = now + self.nonce_ttl
        return Response.json(200, {"nonce": nonce, "expires_in": self.nonce_ttl})

    def _attest(self, body: dict[str, Any]) -> Response:
        rd, te = body.get("runtime-data"), body.get("tee-evidence")
        if not isinstance(rd, dict) or set(rd) != {"nonce", "tee-pubkey"} or not isinstance(te, dict):
            raise BadRequest("attest")
        now = self.clock()
        with self._lock:
            expires = self._nonces.pop(rd["nonce"], None) if isinstance(rd["nonce"], str) else None
        if expires is None or expires <= now:
            raise Unauthorized("nonce")
        try:
            pubkey = public_from_jwk(rd["tee-pubkey"])
            expected = runtime_report_data(rd)
        except (ValueError, TypeError) as e:
            raise BadRequest("tee_pubkey") from e
        kind = te.get("kind")
        if not isinstance(kind, str):
            raise BadRequest("tee_evidence")
        data, aux = _b64_field(te, "data"), _b64_field(te, "aux", required=False)
        audit = self.state.audit
        try:
            claims = ev.verify(self.verifier, kind, data, aux, now=self._now_dt(now))
        except ev.EvidenceRejected as e:
            audit.record("attest", ok=False, now=now, kind=kind[:16], error=e.code)
            raise Denied("evidence") from e
        who = {"tee": claims.tee, "measurement": claims.measurement, "simulated": claims.simulated}
        if claims.report_data != expected:
            audit.record("attest", ok=False, now=now, error="binding", **who)
            raise Denied("binding")
        if not self.state.keystore.policy.allows(claims.to_json()):
            audit.record("attest", ok=False, now=now, error="policy", **who)
            raise Denied("policy")
        session = b64u(secrets.token_bytes(32))
        with self._lock:
            self._purge(now)
            if len(self._sessions) >= self.max_pending:
                raise Busy("sessions")
            self._sessions[session] = _Session(pubkey, claims, now + self.session_ttl)
        audit.record("attest", ok=True, now=now, **who)
        return Response.json(200, {"session": session, "expires_in": self.session_ttl})

    def _keys(self, req: Request, pack: str) -> Response:
        auth = req.headers.get("authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
        now = self.clock()
        with self._lock:
            s = self._sessions.get(token)
        if s is None or s.expires <= now:
            raise Unauthorized("session")
        check_pack(pack)
        who = {"tee": s.claims.tee, "measurement": s.claims.measurement, "simulated": s.claims.simulated}
        with self.state.lock:
            if not self.state.keystore.policy.allows(s.claims.to_json()):  # the policy may have changed
                self.state.audit.record("release", ok=False, now=now, pack=pack, error="policy", **who)
                raise Denied("policy")
            live = self.state.keystore.live(pack)
            plain = canonical({"pack": pack, "ttl": self.key_ttl, "keys": [
                {"kid": k.kid, "version": k.version, "primary": i == 0,
                 "material": b64u(k.material or b"")} for i, k in enumerate(live)]})
        envelope = wrap(s.pubkey, plain, keys_aad(token, pack))
        self.state.audit.record("release", ok=True, now=now, pack=pack, kids=[k.kid for k in live], **who)
        return Response.json(200, {"pack": pack, "wrapped": envelope})

    # -- admin ------------------------------------------------------------------------------------
    def _admin(self, op: str, body: dict[str, Any],
               handler: Callable[[dict[str, Any], float], tuple[dict[str, Any], dict[str, Any]]]) -> Response:
        codes = body.get("codes")
        if not isinstance(codes, dict):
            raise BadRequest("codes")
        now = self.clock()
        st = self.state
        with st.lock:
            try:
                outcome = st.custodians.authorize(codes, now)
            except QuorumRefused as e:
                st.save_custodians()
                o = e.outcome
                st.audit.record(op, ok=False, now=now, error=e.code, accepted=list(o.accepted),
                                refused=list(o.refused), locked=list(o.locked))
                raise
            st.save_custodians()
            try:
                result, fields = handler(body, now)
            except ServiceError as e:
                st.audit.record(op, ok=False, now=now, error=e.code, custodians=list(outcome.accepted))
                raise
            st.save_keystore()
            st.audit.record(op, ok=True, now=now, custodians=list(outcome.accepted), **fields)
        log.info("admin %s by %d custodians", op, len(outcome.accepted))
        return Response.json(200, result)

    def _rotate(self, body: dict[str, Any], now: float) -> tuple[dict[str, Any], dict[str, Any]]:
        key = self.state.keystore.rotate(check_pack(body.get("pack")), now)
        out = {"pack": key.pack, "kid": key.kid, "version": key.version}
        return out, out

    def _retire(self, body: dict[str, Any], now: float) -> tuple[dict[str, Any], dict[str, Any]]:
        kid = body.get("kid")
        if not is_kid(kid):
            raise BadRequest("kid")
        key = self.state.keystore.retire(check_pack(body.get("pack")), kid)
        out = {"pack": key.pack, "kid": key.kid, "version": key.version, "retired": True}
        return out, out

    def _policy(self, body: dict[str, Any], now: float) -> tuple[dict[str, Any], dict[str, Any]]:
        try:
            policy = parse_policy(body.get("policy"))
        except PolicyError as e:
            raise BadRequest("policy") from e
        self.state.keystore.set_policy(policy)
        digest = hashlib.sha256(json.dumps(policy.document, sort_keys=True).encode()).hexdigest()
        return {"ok": True, "policy_sha256": digest}, {"policy_sha256": digest}

    def _backup(self, body: dict[str, Any], now: float) -> tuple[dict[str, Any], dict[str, Any]]:
        raw = _b64_field(body, "recipient")
        if len(raw) != 32:
            raise BadRequest("recipient")
        try:
            recipient = X25519PublicKey.from_public_bytes(raw)
        except ValueError as e:
            raise BadRequest("recipient") from e
        payload = json.dumps({"format": "cloakgate-keys-backup/1", "created": self._now_dt(now).isoformat(),
                              "keystore": self.state.keystore.to_json()}).encode()
        envelope = wrap(recipient, payload, BACKUP_AAD)
        return {"backup": envelope}, {"recipient": hashlib.sha256(raw).hexdigest()[:16]}


def open_backup(envelope: Mapping[str, Any], private_key: Any) -> dict[str, Any]:
    """Decrypt an exported backup with the recipient's X25519 private key (restore tooling, tests)."""
    from .wrap import unwrap

    return json.loads(unwrap(private_key, envelope, BACKUP_AAD))

