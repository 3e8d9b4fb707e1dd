"""Start mitmdump with the gateway as a real subprocess, and talk to it like a client would."""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parents[2]
MITMDUMP = Path(sys.executable).with_name("mitmdump")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mitmdump:
    def __init__(self, tmp: Path, *args: str, script: Path | None = None, rules: Path | None = None,
                 keyring: Path | None = None):
        self.tmp = tmp
        self.port = free_port()
        self.audit = tmp / "audit.jsonl"
        self.log = tmp / f"mitmdump-{self.port}.log"
        self.confdir = tmp / "conf"
        self.keyring = keyring or tmp / "keys" / "dev-keyring.json"
        self.args = [
            str(MITMDUMP),
            "-s", str(script or REPO / "addons" / "gateway.py"),
            "--set", f"confdir={self.confdir}",
            "--set", f"cloakgate_rules={rules or REPO / 'rules'}",
            "--set", f"cloakgate_dev_keyring={self.keyring}",
            "--set", f"cloakgate_audit={self.audit}",
            "--set", "cloakgate_rules_poll=0.2",
            "--set", "flow_detail=0",
            "--listen-host", "127.0.0.1",
            "--listen-port", str(self.port),
            *args,
        ]
        self.proc: subprocess.Popen | None = None
        self._conns: list[http.client.HTTPConnection] = []

    def start(self) -> Mitmdump:
        self._logfile = open(self.log, "wb")
        self.proc = subprocess.Popen(
            self.args, stdout=self._logfile, stderr=subprocess.STDOUT, cwd=self.tmp, start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"mitmdump exited {self.proc.returncode}:\n{self.output()}")
            if b"cloakgate:" in self.log.read_bytes() and b"listening at" in self.log.read_bytes():
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                    return self
                except OSError:
                    pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"mitmdump did not start:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        for c in self._conns:
            c.close()
        self._conns.clear()
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if getattr(self, "_logfile", None) is not None:
            self._logfile.close()
            self._logfile = None

    def __enter__(self) -> Mitmdump:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def reverse_client(self) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        self._conns.append(conn)
        return conn

    def forward_tls_client(self, target_port: int) -> http.client.HTTPSConnection:
        ctx = ssl.create_default_context(cafile=str(self.confdir / "mitmproxy-ca-cert.pem"))
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx, timeout=20)
        conn.set_tunnel("127.0.0.1", target_port)
        self._conns.append(conn)
        return conn


def self_signed_tls(tmp: Path) -> ssl.SSLContext:
    """A TLS server context for the upstream, with a throwaway certificate for 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-saas")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = tmp / "up-cert.pem", tmp / "up-key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certfile, keyfile)
    return ctx


def copy_rules(dst: Path, *extra: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "rules" / "m365.yaml", dst / "m365.yaml")
    for p in extra:
        shutil.copy(p, dst / p.name)
    return dst


SIM_SERVICE = "5e" * 32  # the simulated key service's measurement in these tests
SIM_GATEWAY = "9a" * 32  # the simulated gateway's measurement
RELEASE_POLICY = {"version": "1.0.0", "allOf": [
    {"claim": "tee", "equals": "simulated"},
    {"claim": "measurement", "equals": SIM_GATEWAY},
    {"claim": "debug", "equals": False},
]}


class KeyService:
    """The key service (simulated TEE) as a real subprocess: init once, then serve and restart."""

    def __init__(self, tmp: Path, *, measurement: str = SIM_SERVICE, packs: tuple[str, ...] = ("m365",),
                 policy: dict | None = None, key_ttl: int = 3):
        import json

        self.tmp = tmp
        self.platform = tmp / "platform"
        self.state = tmp / "ks-state"
        self.measurement = measurement
        self.key_ttl = key_ttl
        self.proc: subprocess.Popen | None = None
        self.url = ""
        policy_file = tmp / "release-policy.json"
        policy_file.write_text(json.dumps(policy or RELEASE_POLICY))
        out = subprocess.run(
            [sys.executable, "-m", "cloakgate_keys.service_cli", "init", "--state", str(self.state), "--tee",
             "simulated", "--sim-platform", str(self.platform), "--measurement", measurement, "--custodians", "3",
             "--threshold", "2", "--policy", str(policy_file), *[a for p in packs for a in ("--pack", p)]],
            capture_output=True, text=True, check=True, timeout=60,
        )
        self.otpauth = [line for line in out.stdout.splitlines() if line.startswith("otpauth://")]

    def start(self, port: int = 0, *, debug: bool = False) -> KeyService:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cloakgate_keys.service_cli", "serve", "--state", str(self.state), "--tee",
             "simulated", "--sim-platform", str(self.platform), "--measurement", self.measurement, "--listen",
             f"127.0.0.1:{port}", "--allow-simulated-clients", "--key-ttl", str(self.key_ttl),
             *(["--debug-enclave"] if debug else [])],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("key service exited")
            if line.startswith("listening "):
                self.url = line.split()[1]
                return self
        raise RuntimeError("key service did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None

    def gateway_args(self, *, measurement: str | None = None, gateway_measurement: str = SIM_GATEWAY) -> tuple[str, ...]:
        return ("--set", f"cloakgate_keys={self.url}", "--set", f"cloakgate_keys_measurement={measurement or self.measurement}",
                "--set", "cloakgate_keys_allow_simulated=true", "--set", f"cloakgate_sim_platform={self.platform}",
                "--set", "cloakgate_tee=simulated", "--set", f"cloakgate_tee_measurement={gateway_measurement}",
                "--set", "cloakgate_keys_refresh=0.5")

    def codes(self, n: int = 2) -> list[str]:
        import pyotp

        out = []
        for uri in self.otpauth[:n]:
            t = pyotp.parse_uri(uri)
            cid = urllib.parse.unquote(uri.split("/totp/", 1)[1].split("?", 1)[0]).split(":")[-1]
            out.append(f"{cid}={t.now()}")
        return out

    def admin(self, op: str, *args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "cloakgate_keys.service_cli", op, "--url", self.url, "--measurement",
               self.measurement, "--allow-simulated", "--sim-platform", str(self.platform), *args]
        if op != "status":
            for c in self.codes():
                cmd += ["--code", c]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)
