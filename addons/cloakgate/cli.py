"""``cloakgate-rules check [DIR]``: validate rule packs without starting the proxy."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .core.errors import RuleError
from .core.rules import load_dir

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "rules"


def check_dir(directory: Path) -> tuple[bool, str]:
    if not directory.is_dir():
        return False, f"{directory}: not a directory"
    try:
        packs, errors = load_dir(directory)
    except RuleError as e:
        return False, e.message
    lines = [f"ok {p.source}: pack '{p.id}' ({p.saas}), {len(p.routes)} routes, hosts {', '.join(p.hosts)}" for p in packs]
    lines += [f"error {e.message}" for e in errors.values()]
    if not packs and not errors:
        lines.append(f"{directory}: no rule packs (*.yaml)")
    return not errors, "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="cloakgate-rules", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="validate every pack in a rules directory")
    c.add_argument("directory", nargs="?", type=Path, default=DEFAULT_DIR)
    args = ap.parse_args(argv)
    ok, report = check_dir(args.directory)
    print(report, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
