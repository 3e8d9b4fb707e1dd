"""Evidence providers: produce this process's evidence for 64 bytes of report data.

- ``SimulatedProvider``: the simulated TEE (development only, see ``simulated``).
- ``GramineProvider``: SGX under Gramine, through ``/dev/attestation`` (ATTESTATION.md §7.1).
- ``TsmProvider``: SEV-SNP or TDX through Linux configfs-tsm (ATTESTATION.md §6).

Each takes a root path so tests can point it at a temporary tree mimicking the kernel or Gramine
interface. Reads and writes are single binary calls; a lock serializes report-data write and
evidence read (the pseudo-files are process-global).
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from .simulated import SimulatedPlatform

REPORT_DATA_LEN = 64
MAX_EVIDENCE = 1 << 20
TSM_PROVIDERS = {"sev_guest": "snp", "tdx_guest": "tdx"}


class ProviderError(Exception):
    """Evidence could not be produced. ``code`` says why; no values in the message."""

    def __init__(self, code: str):
        super().__init__(f"evidence provider failed: {code}")
        self.code = f"cloakgate_keys.provider.{code}"


@dataclass(frozen=True)
class Evidence:
    kind: str  # "simulated" | "sgx" | "tdx" | "snp": the verifier to use
    data: bytes = field(repr=False)
    aux: bytes = field(default=b"", repr=False)  # SNP certificate table (configfs auxblob), may be empty


class EvidenceProvider(Protocol):
    tee: str

    def evidence(self, report_data: bytes) -> Evidence: ...


def _check_report_data(report_data: bytes) -> bytes:
    if len(report_data) != REPORT_DATA_LEN:
        raise ProviderError("report_data_length")
    return report_data


class SimulatedProvider:
    tee = "simulated"

    def __init__(self, platform: SimulatedPlatform, *, measurement: str, signer: str | None = None,
                 product_id: int = 0, svn: int = 0, debug: bool = False,
                 clock: Callable[[], float] = time.time):
        self._platform = platform
        self.measurement, self.signer = measurement, signer
        self.product_id, self.svn, self.debug = product_id, svn, debug
        self._clock = clock

    def evidence(self, report_data: bytes) -> Evidence:
        data = self._platform.report(
            _check_report_data(report_data), measurement=self.measurement, signer=self.signer,
            product_id=self.product_id, svn=self.svn, debug=self.debug,
            now=datetime.fromtimestamp(self._clock(), UTC))
        return Evidence("simulated", data)


def _read(path: Path, limit: int = MAX_EVIDENCE) -> bytes:
    with open(path, "rb", buffering=0) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ProviderError("evidence_too_large")
    return data


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb", buffering=0) as f:
        if f.write(data) != len(data):
            raise ProviderError("short_write")


class GramineProvider:
    """SGX DCAP quotes from Gramine's ``/dev/attestation`` (manifest: sgx.remote_attestation = "dcap")."""

    tee = "sgx"
    _lock = threading.Lock()

    def __init__(self, root: str | os.PathLike[str] = "/dev/attestation"):
        self.root = Path(root)

    def evidence(self, report_data: bytes) -> Evidence:
        _check_report_data(report_data)
        try:
            kind_file = self.root / "attestation_type"
            if kind_file.exists() and _read(kind_file, 64).strip() != b"dcap":
                raise ProviderError("gramine_not_dcap")
            with self._lock:
                _write(self.root / "user_report_data", report_data)
                quote = _read(self.root / "quote")
        except OSError as e:
            raise ProviderError("gramine_io") from e
        if not quote:
            raise ProviderError("empty_evidence")
        return Evidence("sgx", quote)


class TsmProvider:
    """SEV-SNP reports or TDX quotes from configfs-tsm (kernel >= 6.7).

    With ``name=None`` each request makes its own report directory (no race with other writers)
    and removes it afterwards; with a ``name`` it reuses that existing directory. Either way the
    ``generation`` counter must show no write but ours, else the evidence is discarded.
    """

    tee = "tsm"

    def __init__(self, root: str | os.PathLike[str] = "/sys/kernel/config/tsm/report", *,
                 name: str | None = None, privlevel: int | None = None):
        if privlevel is not None and not 0 <= privlevel <= 3:
            raise ValueError("privlevel must be 0..3")
        self.root, self.name, self.privlevel = Path(root), name, privlevel
        self._lock = threading.Lock()

    def _mkdir(self, path: Path) -> None:
        path.mkdir(mode=0o700)

    def _rmdir(self, path: Path) -> None:
        path.rmdir()

    def _read(self, path: Path, limit: int = MAX_EVIDENCE) -> bytes:
        return _read(path, limit)

    def _generation(self, d: Path) -> int:
        text = self._read(d / "generation", 32).strip()
        if not text.isdigit():
            raise ProviderError("tsm_generation")
        return int(text)

    def evidence(self, report_data: bytes) -> Evidence:
        _check_report_data(report_data)
        own = self.name is None
        d = self.root / (self.name or f"cloakgate-{os.getpid()}-{secrets.token_hex(8)}")
        with self._lock:
            try:
                if own:
                    self._mkdir(d)
                try:
                    return self._collect(d, report_data)
                finally:
                    if own:
                        self._rmdir(d)
            except OSError as e:
                raise ProviderError("tsm_io") from e

    def _collect(self, d: Path, report_data: bytes) -> Evidence:
        g0 = self._generation(d)
        writes = 1
        _write(d / "inblob", report_data)
        if self.privlevel is not None:
            _write(d / "privlevel", str(self.privlevel).encode())
            writes += 1
        g1 = self._generation(d)
        provider = self._read(d / "provider", 64).strip().decode("ascii", "replace")
        outblob = self._read(d / "outblob")
        aux_path = d / "auxblob"
        aux = self._read(aux_path) if aux_path.exists() else b""
        g2 = self._generation(d)
        # Our own writes advance the counter by at most ``writes``; anything more, or any change
        # while we read, means another writer raced us.
        if not 0 <= g1 - g0 <= writes or g2 != g1:
            raise ProviderError("tsm_race")
        kind = TSM_PROVIDERS.get(provider)
        if kind is None:
            raise ProviderError("tsm_unknown_provider")
        if not outblob:
            raise ProviderError("empty_evidence")
        return Evidence(kind, outblob, aux if kind == "snp" else b"")
