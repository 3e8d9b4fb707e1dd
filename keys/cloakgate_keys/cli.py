"""`cloakgate-keys`: command line of the key service. Subcommands register themselves in
`build_parser`; each sets `func(args) -> int` as its handler.

    cloakgate-keys verify --type sgx|tdx|snp|maa|ratls FILE [--collateral FILE] [--certs DIR]
                          [--now ISO8601] [--allow-debug] [--accept-tcb STATUS ...]
                          [--issuer URL] [--min-tcb NAME=SVN ...]

`verify` prints the normalized claims as JSON and exits 0, or prints one line with the
rejection reason to stderr and exits 2.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from cloakgate_keys.attestation.errors import VerificationError
from cloakgate_keys.attestation.policy import DEFAULT_ACCEPTED_TCB, NOT_EVALUATED
from cloakgate_keys.attestation.verify import verify_evidence

EXIT_REJECTED = 2
_HINTS = {
    "tcb.unevaluated": f"no TCB status was evaluated; pass --collateral, or --accept-tcb {NOT_EVALUATED}",
    "tcb.status": "the TCB status is not accepted; see --accept-tcb",
    "debug": "debug evidence is refused; see --allow-debug",
}


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 instant: {text!r}") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _min_tcb(text: str) -> tuple[str, int]:
    name, sep, svn = text.partition("=")
    if not sep or not svn.isdigit():
        raise argparse.ArgumentTypeError(f"expected NAME=SVN, got {text!r}")
    return name, int(svn)


def _add_verify(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("verify", help="verify attestation evidence and print its claims as JSON")
    p.add_argument("--type", required=True, choices=("sgx", "tdx", "snp", "maa", "ratls"), dest="kind",
                   help="evidence type")
    p.add_argument("file", type=pathlib.Path, metavar="FILE",
                   help="evidence: DCAP quote, SNP or Azure HCL report, MAA JWT, or RA-TLS certificate")
    p.add_argument("--collateral", type=pathlib.Path, metavar="FILE",
                   help="sgx/tdx/ratls: Intel collateral JSON; snp: VCEK/VLEK (+chain) DER or PEM; "
                   "maa: JWKS JSON")
    p.add_argument("--certs", type=pathlib.Path, metavar="DIR",
                   help="snp: directory with AMD ASK/ASVK/ARK certificates")
    p.add_argument("--now", type=_instant, metavar="ISO8601",
                   help="verification instant (default: the current time; naive values are UTC)")
    p.add_argument("--allow-debug", action="store_true", help="accept debug enclaves/TDs/VMs (insecure)")
    default_tcb = ", ".join(sorted(DEFAULT_ACCEPTED_TCB))
    p.add_argument("--accept-tcb", action="append", metavar="STATUS",
                   help=f"accepted TCB status, repeatable (default: {default_tcb})")
    p.add_argument("--issuer", metavar="URL", help="maa: the pinned attestation instance URL (required)")
    p.add_argument("--min-tcb", action="append", type=_min_tcb, metavar="NAME=SVN",
                   help="snp: minimum REPORTED_TCB component, e.g. microcode=115 (repeatable)")
    p.set_defaults(func=_verify)


def _verify(args: argparse.Namespace) -> int:
    try:
        data = args.file.read_bytes()
        collateral = args.collateral.read_bytes() if args.collateral else None
    except OSError as exc:
        print(f"cloakgate-keys verify: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_REJECTED
    options: dict[str, object] = {}
    if args.issuer:
        options["issuer"] = args.issuer
    if args.min_tcb:
        options["min_tcb"] = dict(args.min_tcb)
    try:
        claims = verify_evidence(
            args.kind,
            data,
            now=args.now or datetime.now(UTC),
            collateral=collateral,
            certs_dir=args.certs,
            allow_debug=args.allow_debug,
            accepted_tcb=frozenset(args.accept_tcb) if args.accept_tcb else None,
            **options,
        )
    except VerificationError as exc:
        hint = f" ({_HINTS[exc.reason]})" if exc.reason in _HINTS else ""
        print(f"cloakgate-keys verify: rejected: {exc.reason}{hint}", file=sys.stderr)
        return EXIT_REJECTED
    print(json.dumps(claims.to_json(), indent=2, sort_keys=True))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cloakgate-keys", description="cloakgate key service tools")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_verify(subparsers)
    from .service_cli import add_subcommands

    add_subcommands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
