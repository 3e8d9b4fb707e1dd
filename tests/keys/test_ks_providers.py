"""Evidence providers against temporary trees mimicking Gramine's /dev/attestation and configfs-tsm."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cloakgate_keys.attestation import simulated
from cloakgate_keys.attestation.providers import (
    GramineProvider,
    ProviderError,
    SimulatedProvider,
    TsmProvider,
)
from cloakgate_keys.attestation.simulated import SimulatedPlatform
from cloakgate_keys.service.errors import StateError
from cloakgate_keys.service.sealing import gramine_sealing_key

RD = bytes(range(64))
QUOTE = b"\x03\x00\x02\x00" + b"q" * 60


def gramine_tree(root: Path, attestation_type: bytes = b"dcap") -> Path:
    (root / "keys").mkdir(parents=True)
    (root / "attestation_type").write_bytes(attestation_type)
    (root / "user_report_data").write_bytes(bytes(64))
    (root / "quote").write_bytes(QUOTE)
    (root / "keys" / "_sgx_mrenclave").write_bytes(b"k" * 16)
    return root


def tsm_report_dir(d: Path, provider: str = "sev_guest", generation: int = 0,
                   aux: bytes | None = b"") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "inblob").write_bytes(b"")
    (d / "outblob").write_bytes(b"R" * 1184)
    (d / "provider").write_text(provider + "\n")
    (d / "generation").write_text(f"{generation}\n")
    if aux is not None:
        (d / "auxblob").write_bytes(aux)
    return d


def test_simulated_provider_round_trip(tmp_path):
    plat = SimulatedPlatform.create(tmp_path)
    ev = SimulatedProvider(plat, measurement="aa" * 32, clock=lambda: 1_700_000_000).evidence(RD)
    assert ev.kind == "simulated" and "data" not in repr(ev)
    claims = simulated.verify(ev.data, now=datetime(2024, 1, 1, tzinfo=UTC), allow_simulated=True,
                              platform_key=plat.public_key)
    assert claims.report_data == RD


def test_gramine_writes_report_data_and_reads_quote(tmp_path):
    root = gramine_tree(tmp_path / "attestation")
    ev = GramineProvider(root).evidence(RD)
    assert (ev.kind, ev.data) == ("sgx", QUOTE)
    assert (root / "user_report_data").read_bytes() == RD


@pytest.mark.parametrize("atype", [b"none", b"epid"])
def test_gramine_without_dcap_refused(tmp_path, atype):
    root = gramine_tree(tmp_path / "attestation", atype)
    with pytest.raises(ProviderError) as e:
        GramineProvider(root).evidence(RD)
    assert e.value.code.endswith("gramine_not_dcap")


def test_gramine_missing_device_and_bad_report_data(tmp_path):
    with pytest.raises(ProviderError) as e:
        GramineProvider(tmp_path / "nothing").evidence(RD)
    assert e.value.code.endswith("gramine_io")
    with pytest.raises(ProviderError):
        GramineProvider(gramine_tree(tmp_path / "a")).evidence(b"x" * 32)


def test_gramine_sealing_key(tmp_path):
    root = gramine_tree(tmp_path / "attestation")
    k = gramine_sealing_key(root)
    assert len(k) == 32 and k != b"k" * 32
    (root / "keys" / "_sgx_mrenclave").write_bytes(b"short")
    with pytest.raises(StateError):
        gramine_sealing_key(root)


@pytest.mark.parametrize("provider, kind", [("sev_guest", "snp"), ("tdx_guest", "tdx")])
def test_tsm_named_report_dir(tmp_path, provider, kind):
    d = tsm_report_dir(tmp_path / "report" / "r1", provider, aux=b"CERTTABLE")
    ev = TsmProvider(tmp_path / "report", name="r1").evidence(RD)
    assert ev.kind == kind and ev.data == b"R" * 1184
    assert ev.aux == (b"CERTTABLE" if kind == "snp" else b"")
    assert (d / "inblob").read_bytes() == RD
    assert d.exists()  # a named directory is reused, not removed


def test_tsm_privlevel_is_written(tmp_path):
    d = tsm_report_dir(tmp_path / "report" / "r1", aux=None)
    TsmProvider(tmp_path / "report", name="r1", privlevel=0).evidence(RD)
    assert (d / "privlevel").read_bytes() == b"0"


class FakeConfigfs(TsmProvider):
    """configfs populates a report directory on mkdir and removes its attributes on rmdir."""

    def __init__(self, root: Path):
        super().__init__(root)
        self.made: list[Path] = []

    def _mkdir(self, path: Path) -> None:
        tsm_report_dir(path, "tdx_guest")
        self.made.append(path)

    def _rmdir(self, path: Path) -> None:
        shutil.rmtree(path)


def test_tsm_unique_directory_created_and_removed(tmp_path):
    (tmp_path / "report").mkdir()
    p = FakeConfigfs(tmp_path / "report")
    assert p.evidence(RD).kind == "tdx"
    assert p.made and not p.made[-1].exists() and p.made[-1].name.startswith("cloakgate-")


class RacingWriter(TsmProvider):
    """Another writer changes inblob while we read outblob: generation moves on."""

    def _read(self, path: Path, limit: int = 1 << 20) -> bytes:
        data = super()._read(path, limit)
        if path.name == "outblob":
            g = path.parent / "generation"
            g.write_text(str(int(g.read_text()) + 1))
        return data


def test_tsm_race_detected(tmp_path):
    tsm_report_dir(tmp_path / "report" / "r1", generation=5)
    with pytest.raises(ProviderError) as e:
        RacingWriter(tmp_path / "report", name="r1").evidence(RD)
    assert e.value.code.endswith("tsm_race")


def test_tsm_unknown_provider_and_missing_tree(tmp_path):
    tsm_report_dir(tmp_path / "report" / "r1", "acme_guest")
    with pytest.raises(ProviderError) as e:
        TsmProvider(tmp_path / "report", name="r1").evidence(RD)
    assert e.value.code.endswith("tsm_unknown_provider")
    with pytest.raises(ProviderError) as e:
        TsmProvider(tmp_path / "absent").evidence(RD)
    assert e.value.code.endswith("tsm_io")
