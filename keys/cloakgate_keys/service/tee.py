"""Per-TEE wiring: which evidence provider and which sealing key the service uses.

- ``simulated``: the simulated platform in ``sim_platform`` (created if missing); evidence claims the
  configured ``measurement``; the sealing key is HKDF(platform secret, measurement), so another
  measurement cannot unseal the state.
- ``gramine``: SGX under Gramine; evidence and sealing key from ``/dev/attestation``.
- ``tsm``: SEV-SNP or TDX through configfs-tsm; sealing key from ``sealing_key_file`` (a derived key
  provided by the launcher, see ``sealing``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..attestation.providers import EvidenceProvider, GramineProvider, SimulatedProvider, TsmProvider
from ..attestation.simulated import SimulatedPlatform
from .errors import StateError
from .sealing import Aead, file_sealing_key, gramine_sealing_key

TEES = ("simulated", "gramine", "tsm")
DEFAULT_SIM_MEASUREMENT = hashlib.sha256(b"cloakgate-keys simulated key service v1").hexdigest()


@dataclass(frozen=True)
class TeeConfig:
    tee: str
    sim_platform: Path | None = None
    measurement: str = DEFAULT_SIM_MEASUREMENT
    debug: bool = False  # simulated only: claim a debug enclave (for tests of the client's policy)
    gramine_root: Path = Path("/dev/attestation")
    tsm_root: Path = Path("/sys/kernel/config/tsm/report")
    sealing_key_file: Path | None = None

    def __post_init__(self) -> None:
        if self.tee not in TEES:
            raise ValueError("unknown TEE type")
        if self.tee == "simulated" and self.sim_platform is None:
            raise ValueError("simulated TEE needs a platform directory")
        if self.tee == "tsm" and self.sealing_key_file is None:
            raise ValueError("tsm needs a sealing key file")

    @property
    def simulated(self) -> bool:
        return self.tee == "simulated"

    def _platform(self) -> SimulatedPlatform:
        assert self.sim_platform is not None
        return SimulatedPlatform.load_or_create(self.sim_platform)

    def provider(self) -> EvidenceProvider:
        if self.tee == "simulated":
            return SimulatedProvider(self._platform(), measurement=self.measurement, debug=self.debug)
        if self.tee == "gramine":
            return GramineProvider(self.gramine_root)
        return TsmProvider(self.tsm_root)

    def sealer(self) -> Aead:
        try:
            if self.tee == "simulated":
                return Aead(self._platform().sealing_key(self.measurement))
            if self.tee == "gramine":
                return Aead(gramine_sealing_key(self.gramine_root))
            assert self.sealing_key_file is not None
            return Aead(file_sealing_key(self.sealing_key_file))
        except OSError as e:
            raise StateError("sealing_key") from e
