"""Simulated evidence through the common dispatcher: refused unless allowed, and only with the platform key."""

from datetime import UTC, datetime

import pytest

from cloakgate_keys.attestation.errors import VerificationError
from cloakgate_keys.attestation.simulated import SimulatedPlatform
from cloakgate_keys.attestation.verify import verify_evidence
from cloakgate_keys.cli import main

NOW = datetime(2026, 11, 28, tzinfo=UTC)


def test_simulated_through_dispatcher(tmp_path, capsys):
    platform = SimulatedPlatform.create(tmp_path / "p")
    report = platform.report(b"\x01" * 64, measurement="ab" * 32, now=NOW)
    with pytest.raises(VerificationError):
        verify_evidence("simulated", report, now=NOW, platform_dir=tmp_path / "p")
    claims = verify_evidence("simulated", report, now=NOW, allow_simulated=True, platform_dir=tmp_path / "p")
    assert claims.simulated and claims.to_json()["SIMULATED"] is True and claims.report_data == b"\x01" * 64
    other = SimulatedPlatform.create(tmp_path / "q")
    with pytest.raises(VerificationError):
        verify_evidence("simulated", report, now=NOW, allow_simulated=True, platform_key=other.public_key)


def test_service_commands_are_wired_into_the_main_cli(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("verify", "init", "serve", "rotate", "retire", "set-policy", "backup", "status"):
        assert cmd in out
