"""Command line of the key service: ``init``, ``serve`` and the custodian-authorized admin operations.

    python -m cloakgate_keys.service_cli init  --state DIR --tee simulated --sim-platform P \\
        --custodians 3 --threshold 2 [--pack NAME ...] [--policy FILE]
    python -m cloakgate_keys.service_cli serve --state DIR --listen 127.0.0.1:8443 --tee simulated \\
        --sim-platform P [--allow-simulated-clients] [--key-ttl 300]
    python -m cloakgate_keys.service_cli rotate|retire|set-policy|backup|status --url https://... \\
        [--allow-simulated --sim-platform P] --measurement HEX [--code c1=123456 ...]

Admin commands verify the service's RA-TLS certificate against the given policy before sending
anything, then send the custodians' codes (``--code ID=CODE``, or ``ID=CODE`` lines on stdin).
``add_subcommands`` wires the same commands into the main ``cloakgate-keys`` CLI.
"""

from __future__ import annotations

import argparse
import base64
import functools
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from .attestation.providers import ProviderError
from .client import KeyServiceUnavailable, ServicePolicy, VerifiedConnection
from .service.app import KeyServiceApp
from .service.errors import ServiceError
from .service.evidence import VerifierConfig
from .service.policy import DENY_ALL, PolicyError, parse_policy
from .service.ratls import build_identity
from .service.server import KeyServer
from .service.state import ServiceState
from .service.tee import DEFAULT_SIM_MEASUREMENT, TEES, TeeConfig

log = logging.getLogger("cloakgate_keys.service")


def _add_tee_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state", required=True, type=Path,
                   help="state directory (sealed master key, keys, audit)")
    p.add_argument("--tee", required=True, choices=TEES, help="TEE this service runs in")
    p.add_argument("--sim-platform", type=Path, help="simulated platform directory (simulated TEE only)")
    p.add_argument("--measurement", default=DEFAULT_SIM_MEASUREMENT,
                   help="measurement the simulated service claims (hex)")
    p.add_argument("--debug-enclave", action="store_true", help="simulated only: claim a debug enclave")
    p.add_argument("--gramine-root", type=Path, default=Path("/dev/attestation"))
    p.add_argument("--tsm-root", type=Path, default=Path("/sys/kernel/config/tsm/report"))
    p.add_argument("--sealing-key-file", type=Path, help="tsm only: 32-byte derived sealing key")


def _add_client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", required=True, help="https://host:port of the key service")
    p.add_argument("--measurement", action="append", default=[], help="accepted service measurement (hex)")
    p.add_argument("--signer", action="append", default=[], help="accepted service signer (hex)")
    p.add_argument("--tee-type", action="append", default=[], help="accepted TEE types (default sgx,tdx,snp)")
    p.add_argument("--allow-simulated", action="store_true", help="accept a SIMULATED key service")
    p.add_argument("--sim-platform", help="simulated platform directory (its public key)")
    p.add_argument("--allow-debug", action="store_true", help="accept a debug enclave (insecure)")


def _add_codes(p: argparse.ArgumentParser) -> None:
    p.add_argument("--code", action="append", default=[], metavar="ID=CODE",
                   help="a custodian's TOTP code; repeat for each (default: ID=CODE lines on stdin)")


def _guarded(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Run a command; turn failures into an exit status and a code on stderr (never a value)."""

    @functools.wraps(fn)
    def run(a: argparse.Namespace) -> int:
        try:
            return int(fn(a))
        except KeyServiceUnavailable as e:
            print(f"error: {e.code}", file=sys.stderr)
            return 2
        except PolicyError as e:
            print(f"error: invalid policy: {e}", file=sys.stderr)
            return 1
        except (ServiceError, ProviderError, ValueError, OSError) as e:
            print(f"error: {getattr(e, 'code', type(e).__name__)}", file=sys.stderr)
            return 1

    return run


def add_subcommands(subparsers: Any) -> None:
    p = subparsers.add_parser("init", help="create the master key, enroll custodians, create packs")
    _add_tee_args(p)
    p.add_argument("--custodians", type=int, required=True, help="number of custodians (N)")
    p.add_argument("--threshold", type=int, required=True, help="codes needed for admin operations (K)")
    p.add_argument("--pack", action="append", default=[], help="create version 1 of this rule pack's key")
    p.add_argument("--policy", type=Path, help="release policy file (JSON or YAML); default: deny all")
    p.set_defaults(func=_guarded(cmd_init))

    p = subparsers.add_parser("serve", help="run the key service (HTTPS, TLS 1.3, RA-TLS)")
    _add_tee_args(p)
    p.add_argument("--listen", default="127.0.0.1:8443", help="HOST:PORT (port 0: ephemeral)")
    p.add_argument("--allow-simulated-clients", action="store_true",
                   help="accept SIMULATED gateway evidence (development only)")
    p.add_argument("--allow-debug-clients", action="store_true", help="accept debug gateway evidence")
    p.add_argument("--key-ttl", type=int, default=300, help="seconds gateways may cache released keys")
    p.set_defaults(func=_guarded(cmd_serve))

    for name, fn, helptext in (("rotate", cmd_rotate, "make a new primary key version of a pack"),
                               ("retire", cmd_retire, "retire (destroy) a key version"),
                               ("set-policy", cmd_set_policy, "replace the release policy"),
                               ("backup", cmd_backup, "export a backup encrypted to an X25519 key"),
                               ("status", cmd_status, "verify the service's attestation and show it")):
        p = subparsers.add_parser(name, help=helptext)
        _add_client_args(p)
        if name != "status":
            _add_codes(p)
        if name in ("rotate", "retire"):
            p.add_argument("--pack", required=True)
        if name == "retire":
            p.add_argument("--kid", required=True)
        if name == "set-policy":
            p.add_argument("--policy", type=Path, required=True)
        if name == "backup":
            p.add_argument("--recipient", type=Path, required=True, help="X25519 public key (PEM)")
            p.add_argument("--out", type=Path, required=True, help="where to write the encrypted backup")
        p.set_defaults(func=_guarded(fn))


def _tee_config(a: argparse.Namespace) -> TeeConfig:
    return TeeConfig(a.tee, sim_platform=a.sim_platform, measurement=a.measurement, debug=a.debug_enclave,
                     gramine_root=a.gramine_root, tsm_root=a.tsm_root, sealing_key_file=a.sealing_key_file)


def cmd_init(a: argparse.Namespace) -> int:
    cfg = _tee_config(a)
    policy = DENY_ALL if a.policy is None else parse_policy(a.policy.read_text())
    _, uris = ServiceState.initialize(a.state, cfg.sealer(), tee=cfg.tee, custodians=a.custodians,
                                      threshold=a.threshold, packs=a.pack, policy=policy, now=time.time())
    print(f"# {a.custodians} custodians, {a.threshold} needed. Each adds ONE line to an authenticator app;")
    print("# these secrets are shown once and stored only sealed.")
    for uri in uris:
        print(uri)
    return 0


def cmd_serve(a: argparse.Namespace, *, stop: threading.Event | None = None) -> int:
    cfg = _tee_config(a)
    state = ServiceState.open(a.state, cfg.sealer(), tee=cfg.tee)
    host, _, port = a.listen.rpartition(":")
    identity = build_identity(cfg.provider(), now=datetime.now(UTC))
    info = {"tee": identity.evidence.kind, "measurement": cfg.measurement if cfg.simulated else None,
            "SIMULATED": cfg.simulated}
    verifier = VerifierConfig(allow_simulated=a.allow_simulated_clients, sim_platform_dir=a.sim_platform,
                              allow_debug=a.allow_debug_clients)
    app = KeyServiceApp(state, verifier=verifier, info=info, key_ttl=a.key_ttl)
    server = KeyServer(app, identity, host.strip("[]") or "127.0.0.1", int(port))
    stop = stop or threading.Event()
    handlers = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)} \
        if threading.current_thread() is threading.main_thread() else {}
    with server:
        if cfg.simulated:
            log.warning("SIMULATED TEE: this key service offers no hardware protection")
        print(f"listening {server.url} tee={identity.evidence.kind} SIMULATED={str(cfg.simulated).lower()}",
              flush=True)
        stop.wait()
    for s, h in handlers.items():
        signal.signal(s, h)
    return 0


def _service_policy(a: argparse.Namespace) -> ServicePolicy:
    return ServicePolicy(tees=frozenset(a.tee_type or ("sgx", "tdx", "snp")),
                         measurements=frozenset(m.lower() for m in a.measurement),
                         signers=frozenset(s.lower() for s in a.signer), allow_simulated=a.allow_simulated,
                         allow_debug=a.allow_debug, sim_platform_dir=a.sim_platform)


def _codes(a: argparse.Namespace) -> dict[str, str]:
    lines = a.code or [ln.strip() for ln in sys.stdin if ln.strip()]
    out = {}
    for item in lines:
        cid, sep, code = item.partition("=")
        if not sep:
            raise ValueError("codes are ID=CODE")
        out[cid.strip()] = code.strip()
    return out


def _admin(a: argparse.Namespace, op: str, body: dict[str, Any]) -> dict[str, Any]:
    body = {**body, "codes": _codes(a)}
    with VerifiedConnection(a.url, _service_policy(a), now=datetime.now(UTC)) as conn:
        status, resp = conn.request("POST", f"/admin/{op}", body)
    if status != 200:
        raise KeyServiceUnavailable(str(resp.get("error", f"http_{status}"))[:100])
    return resp


def cmd_rotate(a: argparse.Namespace) -> int:
    print(json.dumps(_admin(a, "rotate", {"pack": a.pack})))
    return 0


def cmd_retire(a: argparse.Namespace) -> int:
    print(json.dumps(_admin(a, "retire", {"pack": a.pack, "kid": a.kid})))
    return 0


def cmd_set_policy(a: argparse.Namespace) -> int:
    policy = parse_policy(a.policy.read_text())  # refuse a bad policy locally too
    print(json.dumps(_admin(a, "policy", {"policy": dict(policy.document)})))
    return 0


def cmd_backup(a: argparse.Namespace) -> int:
    key = serialization.load_pem_public_key(a.recipient.read_bytes())
    if not isinstance(key, X25519PublicKey):
        raise ValueError("recipient must be an X25519 public key")
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    recipient = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    resp = _admin(a, "backup", {"recipient": recipient})
    a.out.write_text(json.dumps(resp["backup"]) + "\n")
    print(json.dumps({"backup": str(a.out)}))
    return 0


def cmd_status(a: argparse.Namespace) -> int:
    with VerifiedConnection(a.url, _service_policy(a), now=datetime.now(UTC)) as conn:
        claims = conn.claims.to_json()
    claims.pop("report_data", None)
    print(json.dumps({"verified": True, **claims}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cloakgate-keys-service", description=__doc__.split("\n")[0])
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    a = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(a.func(a))


if __name__ == "__main__":
    sys.exit(main())
