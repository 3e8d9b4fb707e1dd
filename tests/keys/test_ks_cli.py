"""The service CLI: `init` and `serve` as real processes, admin subcommands against them."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from cloakgate_keys import service_cli
from cloakgate_keys.attestation.providers import SimulatedProvider
from cloakgate_keys.attestation.simulated import SimulatedPlatform
from cloakgate_keys.client import KeyClient, ServicePolicy
from cloakgate_keys.service.app import open_backup

SVC = "c0" * 32
GW = "9a" * 32
POLICY = "version: 1.0.0\nallOf:\n  - claim: measurement\n    equals: " + GW + "\n"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cloakgate_keys.service_cli", *args], capture_output=True,
                          text=True, timeout=60)


class Service:
    def __init__(self, root: Path):
        self.root, self.platform, self.state = root, root / "platform", root / "state"
        (root / "policy.yaml").write_text(POLICY)
        done = run("init", "--state", str(self.state), "--tee", "simulated",
                   "--sim-platform", str(self.platform), "--measurement", SVC, "--custodians", "5", "--threshold", "2", "--pack", "crm",
                   "--policy", str(root / "policy.yaml"))
        assert done.returncode == 0, done.stderr
        uris = [ln for ln in done.stdout.splitlines() if ln.startswith("otpauth://")]
        assert len(uris) == 5
        self.totp = [pyotp.parse_uri(u) for u in uris]
        secrets = [t.secret for t in self.totp]
        for f in self.state.iterdir():  # shown once, stored only sealed
            assert not any(s.encode() in f.read_bytes() for s in secrets)

    def codes(self, *idx: int) -> list[str]:
        out = []
        for i in idx:
            out += ["--code", f"c{i}={self.totp[i - 1].now()}"]
        return out

    def client_args(self, url: str) -> list[str]:
        return ["--url", url, "--allow-simulated", "--sim-platform", str(self.platform), "--measurement", SVC]


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[Service, str]]:
    svc = Service(tmp_path)
    cmd = [sys.executable, "-m", "cloakgate_keys.service_cli", "serve", "--state", str(svc.state), "--tee",
           "simulated", "--sim-platform", str(svc.platform), "--measurement", SVC, "--listen", "127.0.0.1:0",
           "--allow-simulated-clients", "--key-ttl", "60"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            line = proc.stdout.readline() if proc.stdout else ""
            assert line.startswith("listening https://127.0.0.1:"), line
            assert "SIMULATED=true" in line
            yield svc, line.split()[1]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
    assert proc.returncode == 0


def test_served_process_releases_keys_and_admin_commands(service, capsys, tmp_path):
    svc, url = service
    platform = SimulatedPlatform.load(svc.platform)
    client = KeyClient(url, service_policy=ServicePolicy(measurements=frozenset({SVC}), allow_simulated=True,
                                                         sim_platform_dir=str(svc.platform)),
                       evidence_provider=SimulatedProvider(platform, measurement=GW))
    old = client.keys_for("crm")[0]
    assert client.status()["SIMULATED"] is True

    assert service_cli.main(["status", *svc.client_args(url)]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["verified"] and status["SIMULATED"] and status["measurement"] == SVC

    assert service_cli.main(["rotate", *svc.client_args(url), "--pack", "crm", *svc.codes(5)]) == 2
    assert "unauthorized" in capsys.readouterr().err  # one code is too few

    codes = svc.codes(1, 2)
    assert service_cli.main(["rotate", *svc.client_args(url), "--pack", "crm", *codes]) == 0
    new = json.loads(capsys.readouterr().out)
    assert new["version"] == 2 and new["kid"] != old.kid
    client.refresh()
    assert [k.kid for k in client.keys_for("crm")] == [new["kid"], old.kid]

    assert service_cli.main(["retire", *svc.client_args(url), "--pack", "crm", "--kid", old.kid,
                             *codes]) == 2  # replayed codes
    capsys.readouterr()
    assert service_cli.main(["retire", *svc.client_args(url), "--pack", "crm", "--kid", old.kid,
                             *svc.codes(3, 4)]) == 0
    capsys.readouterr()
    client.refresh()
    assert [k.kid for k in client.keys_for("crm")] == [new["kid"]]

    # the admin CLI refuses a service outside its policy before sending anything
    args = ["--url", url, "--allow-simulated", "--sim-platform", str(svc.platform),
            "--measurement", "00" * 32]
    assert service_cli.main(["status", *args]) == 2
    assert "service_rejected.identity" in capsys.readouterr().err


def test_backup_and_set_policy_commands(service, capsys, tmp_path):
    svc, url = service
    recipient = X25519PrivateKey.generate()
    pub = tmp_path / "backup.pub"
    pub.write_bytes(recipient.public_key().public_bytes(serialization.Encoding.PEM,
                                                        serialization.PublicFormat.SubjectPublicKeyInfo))
    out = tmp_path / "backup.json"
    assert service_cli.main(["backup", *svc.client_args(url), "--recipient", str(pub), "--out", str(out),
                             *svc.codes(1, 2)]) == 0
    backup = open_backup(json.loads(out.read_text()), recipient)
    assert [v["pack"] for v in backup["keystore"]["versions"]] == ["crm"]
    capsys.readouterr()

    bad = tmp_path / "bad.json"
    bad.write_text('{"anyOf": [{"claim": "tee", "regex": "."}]}')
    set_policy = ["set-policy", *svc.client_args(url), "--policy"]
    assert service_cli.main([*set_policy, str(bad), *svc.codes(3, 4)]) == 1  # refused locally
    capsys.readouterr()
    good = tmp_path / "deny.json"
    good.write_text('{"anyOf": []}')
    assert service_cli.main([*set_policy, str(good), *svc.codes(3, 4)]) == 0
    capsys.readouterr()
    audit = [json.loads(x) for x in (svc.state / "audit.jsonl").read_text().splitlines()]
    assert [e["op"] for e in audit if e["op"] in ("backup", "policy")] == ["backup", "policy"]


def test_subcommands_wire_into_another_parser():
    parser = argparse.ArgumentParser(prog="cloakgate-keys")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("verify")
    service_cli.add_subcommands(sub)
    a = parser.parse_args(["serve", "--state", "s", "--tee", "simulated", "--listen", "127.0.0.1:0"])
    assert a.func.__wrapped__ is service_cli.cmd_serve


def test_init_refuses_existing_state_and_bad_arguments(tmp_path, capsys):
    common = ["--tee", "simulated", "--sim-platform", str(tmp_path / "p"), "--custodians", "2"]
    args = ["init", "--state", str(tmp_path / "s"), *common, "--threshold", "2"]
    assert service_cli.main(args) == 0
    assert capsys.readouterr().out.count("otpauth://") == 2
    assert service_cli.main(args) == 1
    assert "conflict" in capsys.readouterr().err
    bad = ["init", "--state", str(tmp_path / "t"), *common, "--threshold", "3"]
    assert service_cli.main(bad) == 1
