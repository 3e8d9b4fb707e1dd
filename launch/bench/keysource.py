"""Where the benchmark's data keys come from: the key service in a SIMULATED TEE (``--keys service``,
the default) or a DEVELOPMENT key ring file made for the run (``--keys dev``).

With the service, the benchmark does what ``launch/run`` does: ``init`` a service (state, simulated
platform and log in the run's temporary directory), ``serve`` it on an ephemeral port of 127.0.0.1,
and start every gateway with the options that make it fetch its keys over attested TLS. The
benchmark process then fetches the same keys as a simulated client under the gateway's own policy
and measurement, so the fake upstream's tokens are made with exactly the keys the gateway holds.
Those keys stay in memory: they reach the upstream through a pipe (``keypipe``), never a file.

If the service cannot start or refuses the keys, the gateway configuration is skipped with the
reason; direct and passthrough still run, with a throwaway in-memory key ring for the upstream.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import procs
import workloads

PACK = workloads.PACK
POLICY = procs.REPO / "launch" / "keyservice" / "dev-release-policy.json"
CLI = [sys.executable, "-m", "cloakgate_keys.service_cli"]


@dataclass(frozen=True)
class Keys:
    source: str  # "service" | "dev"
    text: str  # what the report says about the key source
    ring: Any = field(repr=False)  # StaticKeyRing: the upstream's tokens and the microbenchmarks
    gateway_args: list[str] | None  # mitmdump options of every gateway; None: no gateway can run
    audit: Path | None = None  # the key service's audit log, where its calls are counted
    problem: str | None = None  # why gateway_args is None


def pack_ids(rules: Path | None) -> list[str]:
    """The packs the gateway loads: the service must hold a key for each, or the gateway retries."""
    from cloakgate.core.rules import load_dir

    packs, _ = load_dir(rules or procs.REPO / "rules")
    return sorted({p.id for p in packs} | {PACK})


def dev(tmp: Path, rules: Path | None) -> Keys:
    """The DEVELOPMENT key ring file (the gateway derives the same keys from the same file)."""
    from cloakgate.keysource import DevKeySource

    path = tmp / "keys" / "keyring.json"
    return Keys(
        source="dev",
        text=(
            "DEVELOPMENT key ring file made for the run, keys derived locally at start-up (no key "
            "service); the fake upstream's tokens are made with the same keys"
        ),
        ring=DevKeySource(path).ring(pack_ids(rules)),
        gateway_args=["--set", f"cloakgate_dev_keyring={path}"],
    )


def service(children: procs.Children, tmp: Path, rules: Path | None, ttl: int) -> Keys:
    """Start the simulated key service and fetch the keys the gateways will get from it."""
    platform, state = tmp / "sim-platform", tmp / "keyservice"
    try:
        packs = pack_ids(rules)
        _init(platform, state, packs)
        url = _serve(children, tmp, platform, state, ttl)
        ring = _released_ring(url, platform)
        gateway_args = _gateway_args(url, platform)
    except Exception as e:  # noqa: BLE001 - keys/ may be mid-change: the gateway is skipped, the rest runs
        return Keys(
            source="service",
            text=(
                "key service in a SIMULATED TEE, which did not start or release keys: the gateway did "
                "not run, and the fake upstream's tokens are made with throwaway keys"
            ),
            ring=_throwaway_ring(),
            gateway_args=None,
            problem=f"the key service did not start or release keys: {type(e).__name__}: {e}",
        )
    return Keys(
        source="service",
        text=(
            "key service in a SIMULATED TEE (`cloakgate_keys.service_cli serve --tee simulated` on "
            f"127.0.0.1), released over attested TLS at start-up, lease {ttl} s; the fake upstream's "
            "tokens are made with the same released keys, handed to it through a pipe (never a file)"
        ),
        ring=ring,
        gateway_args=gateway_args,
        audit=state / "audit.jsonl",
    )


def _init(platform: Path, state: Path, packs: list[str]) -> None:
    """``init`` prints the custodians' TOTP secrets: captured and dropped, never logged."""
    cmd = [*CLI, "init", *_tee_args(platform, state), "--custodians", "3", "--threshold", "2"]
    cmd += ["--policy", str(POLICY), *[a for p in packs for a in ("--pack", p)]]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"init exited {out.returncode}: {' '.join(out.stderr.split())[-300:]}")


def _tee_args(platform: Path, state: Path) -> list[str]:
    return ["--state", str(state), "--tee", "simulated", "--sim-platform", str(platform)]


def _serve(children: procs.Children, tmp: Path, platform: Path, state: Path, ttl: int) -> str:
    """Serve on an ephemeral port; the URL is the one the ``listening https://...`` line names."""
    argv = [*CLI, "serve", *_tee_args(platform, state), "--listen", "127.0.0.1:0"]
    argv += ["--allow-simulated-clients", "--key-ttl", str(ttl)]
    proc = children.add(procs.Proc("keyservice", argv, tmp / "keyservice.log").start())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in proc.output(20000).splitlines():
            if line.startswith("listening https://"):
                url = line.split()[1]
                proc.port = int(url.rsplit(":", 1)[1])
                return url
        if not proc.alive():
            raise RuntimeError(f"serve exited ({proc.popen.returncode}): {proc.output(600)}")
        time.sleep(0.05)
    raise RuntimeError(f"serve did not listen within 30 s: {proc.output(600)}")


def _released_ring(url: str, platform: Path) -> Any:
    """The pack's keys as the gateway gets them: the gateway's own ``service_source``, its policy and
    its simulated measurement. One attest and one release, before any steady state."""
    from cloakgate.keysource import service_source
    from cloakgate.mitm.gateway import SIM_GATEWAY_MEASUREMENT
    from cloakgate_keys.service.tee import DEFAULT_SIM_MEASUREMENT

    src = service_source(
        url,
        measurements=[DEFAULT_SIM_MEASUREMENT],
        signers=[],
        allow_simulated=True,
        sim_platform=str(platform),
        tee="simulated",
        tee_measurement=SIM_GATEWAY_MEASUREMENT,
    )
    ring = src.ring([PACK])
    if not ring.keys():
        raise RuntimeError(f"no keys released for pack {PACK} ({src.client.status().get('last_error')})")
    return ring


def _gateway_args(url: str, platform: Path) -> list[str]:
    """The mitmdump options of ``launch/run``; the gateway claims its default simulated measurement."""
    from cloakgate_keys.service.tee import DEFAULT_SIM_MEASUREMENT

    opts = (
        f"cloakgate_keys={url}",
        f"cloakgate_keys_measurement={DEFAULT_SIM_MEASUREMENT}",
        "cloakgate_keys_allow_simulated=true",
        f"cloakgate_sim_platform={platform}",
        "cloakgate_tee=simulated",
    )
    return [a for o in opts for a in ("--set", o)]


def _throwaway_ring() -> Any:
    """Random keys in memory only, so direct and passthrough still have tokens to carry."""
    from cloakgate.core.keyring import DataKey, StaticKeyRing

    return StaticKeyRing([DataKey("bnc", PACK, 1, os.urandom(32))])
