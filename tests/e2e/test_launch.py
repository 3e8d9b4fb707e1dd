"""The README's run command starts the gateway on its embedded default."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import pytest

from tests.e2e.harness import REPO, free_port

pytestmark = pytest.mark.e2e


def test_launch_run_starts_the_gateway(tmp_path):
    port = free_port()
    log = tmp_path / "run.log"
    env = {**os.environ, "HOME": str(tmp_path), "CLOAKGATE_KEYS_PORT": str(free_port())}
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(REPO / "launch" / "run"), "--listen-port", str(port)], stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                assert proc.poll() is None, log.read_text()
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    if b"cloakgate:" in log.read_bytes():
                        break
                except OSError:
                    pass
                time.sleep(0.2)
            text = log.read_text()
            assert "cloakgate: 1 rule pack(s) [m365" in text, text
            assert "KEY SERVICE (SIMULATED TEE)" in text and "primary keys: m365:" in text, text
            assert f"127.0.0.1:{port}" in text
            assert text.count("otpauth://totp/") == 3  # the custodians' secrets, shown once
            assert (tmp_path / ".cloakgate").stat().st_mode & 0o777 == 0o700
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
