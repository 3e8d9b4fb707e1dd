"""How the benchmark starts its processes (nothing is started here)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "launch" / "bench"))

import procs  # noqa: E402


def _confdir(argv: list[str]) -> str:
    return next(v.split("=", 1)[1] for v in argv if v.startswith("confdir="))


def test_proxies_started_side_by_side_each_write_their_own_ca(tmp_path: Path):
    """mitmdump writes its CA into a fresh confdir non-atomically: a second one starting at that moment
    read a half-written file and exited (MalformedFraming, seen in CI). The passthrough, the gateway and
    the scale-out's gateways start together, so each gets its own confdir inside the run's folder."""
    names = ["passthrough", "gateway", "gateway-n1-0", "gateway-n2-0", "gateway-n2-1"]
    dirs = [
        _confdir(procs.mitmdump_argv(8080, 9090, gateway=n != "passthrough", tmp=tmp_path, keys=[], name=n))
        for n in names
    ]
    assert len(set(dirs)) == len(names)
    assert all(Path(d).parent == tmp_path for d in dirs)
