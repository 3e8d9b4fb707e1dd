"""The deployment files under launch/keyservice parse and say what a TEE deployment needs."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

KS = Path(__file__).resolve().parents[1] / "launch" / "keyservice"


def render_gramine(text: str) -> str:
    """Stand-in for gramine-manifest's Jinja rendering: every {{ ... }} becomes a plausible path."""
    values = {"entrypoint": "/usr/bin/python3.12", "log_level": "error", "arch_libdir": "/lib/x86_64-linux-gnu",
              "venv": "/opt/cloakgate/.venv", "state": "/var/lib/cloakgate-keys",
              "gramine.libos": "/usr/lib/x86_64-linux-gnu/gramine/libsysdb.so",
              "gramine.runtimedir()": "/usr/lib/x86_64-linux-gnu/gramine/runtime/glibc"}
    return re.sub(r"\{\{\s*([^}]+?)\s*\}\}", lambda m: values[m.group(1)], text)


def test_gramine_manifest():
    m = tomllib.loads(render_gramine((KS / "cloakgate-keys.manifest.template").read_text()))
    assert m["sgx"]["remote_attestation"] == "dcap" and m["sgx"]["debug"] is False
    argv = m["loader"]["argv"]
    assert argv[argv.index("--tee") + 1] == "gramine" and "serve" in argv
    state = argv[argv.index("--state") + 1]
    sealed = [x for x in m["fs"]["mounts"] if x.get("path") == state]
    assert sealed and sealed[0]["type"] == "encrypted" and sealed[0]["key_name"].startswith("_sgx_mr")
    assert all(f.startswith("file:") for f in m["sgx"]["trusted_files"])


def test_kubernetes_confidential_container():
    docs = [d for d in yaml.safe_load_all((KS / "k8s-keyservice.yaml").read_text()) if d]
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "PersistentVolumeClaim"} <= kinds
    dep = next(d for d in docs if d["kind"] == "Deployment")
    spec = dep["spec"]["template"]["spec"]
    assert spec["runtimeClassName"] in {"kata-qemu-snp", "kata-qemu-tdx"}
    cmd = spec["containers"][0]["command"]
    assert cmd[cmd.index("--tee") + 1] == "tsm"
    mounts = {v["mountPath"] for v in spec["containers"][0]["volumeMounts"]}
    assert "/sys/kernel/config" in mounts and cmd[cmd.index("--state") + 1] in mounts


def test_scone_session_and_build_file():
    s = yaml.safe_load((KS / "scone-session.yaml").read_text())
    assert s["security"]["attestation"]["mode"] == "hardware" and s["security"]["attestation"]["tolerate"] == []
    svc = s["services"][0]
    assert svc["mrenclaves"] and "serve" in svc["command"]
    assert any(v["name"] == "sealed_state" for v in s["volumes"])
    docker = (KS / "scone-keyservice.Dockerfile").read_text()
    assert docker.startswith("#") and "FROM registry.scontain.com/" in docker
    assert "--encrypted" in docker and "ENTRYPOINT" in docker


def test_dev_release_policy_admits_the_simulated_gateway_only():
    import hashlib
    import json

    from cloakgate_keys.service.policy import parse_policy

    policy = parse_policy((KS / "dev-release-policy.json").read_text())
    gw = hashlib.sha256(b"cloakgate gateway simulated v1").hexdigest()
    assert policy.allows({"tee": "simulated", "measurement": gw, "debug": False})
    assert not policy.allows({"tee": "simulated", "measurement": gw, "debug": True})
    assert not policy.allows({"tee": "sgx", "measurement": gw, "debug": False})
    assert json.loads((KS / "dev-release-policy.json").read_text())["allOf"]
