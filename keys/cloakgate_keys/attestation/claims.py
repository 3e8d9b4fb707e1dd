"""Normalized claims: what every verifier yields and what release policies are evaluated over."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Claims:
    tee: str  # "sgx" | "tdx" | "snp" | "maa" | "simulated"
    measurement: str  # hex: MRENCLAVE, MRTD or SNP MEASUREMENT
    report_data: bytes  # the 64 bytes that bind a TLS key or a nonce
    debug: bool
    tcb_status: str  # e.g. "UpToDate", "SWHardeningNeeded", "OutOfDate"; "Simulated" for the simulated type
    signer: str | None = None  # hex MRSIGNER (SGX), None where the TEE has no signer
    product_id: int | None = None
    svn: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def simulated(self) -> bool:
        return self.tee == "simulated"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "tee": self.tee,
            "measurement": self.measurement,
            "signer": self.signer,
            "product_id": self.product_id,
            "svn": self.svn,
            "tcb_status": self.tcb_status,
            "debug": self.debug,
            "report_data": self.report_data.hex(),
        }
        if self.simulated:
            out["SIMULATED"] = True
        out.update({k: v for k, v in self.extra.items() if k not in out})
        return out
