"""Intel TCB appraisal from verified collateral: platform TCB level (SGX and TDX), QE identity
and TDX module identity, converged into one status with its advisories.

Algorithm: ATTESTATION.md §4 (Intel PCS "TCB level" rules; TDX rules quoted in go-tdx-guest
testdata/README.md, module identities as in Intel's QVL TdxModuleCheck).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509

from cloakgate_keys.attestation.collateral import IntelCollateral, verify_intel_collateral
from cloakgate_keys.attestation.dcap import EnclaveReport, VerifiedQuote
from cloakgate_keys.attestation.errors import VerificationError
from cloakgate_keys.attestation.pck import Pck
from cloakgate_keys.attestation.policy import INTEL_TCB_STATUSES, NOT_EVALUATED

_CONFIGURATION = frozenset(
    {"ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded", "OutOfDateConfigurationNeeded"}
)


@dataclass(frozen=True)
class TdxTcb:
    """What the TD quote body contributes to the TCB appraisal."""

    tee_tcb_svn: bytes  # 16 bytes: [0] module SVN, [1] module major version, ...
    mr_signer_seam: bytes
    seam_attributes: bytes


@dataclass(frozen=True)
class TcbResult:
    status: str  # converged status
    platform_status: str
    qe_status: str
    module_status: str | None
    advisory_ids: tuple[str, ...]
    tcb_date: str
    evaluation_data_number: int

    def facts(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": self.status,
            "platform_status": self.platform_status,
            "qe_status": self.qe_status,
            "tcb_date": self.tcb_date,
            "evaluation_data_number": self.evaluation_data_number,
        }
        if self.module_status is not None:
            out["module_status"] = self.module_status
        return out


def appraise(
    quote: VerifiedQuote, collateral: IntelCollateral | None, *, root: x509.Certificate, now: datetime,
    td: TdxTcb | None = None,
) -> tuple[str, dict[str, Any]]:
    """The TCB status and the claims it adds; `NOT_EVALUATED` and nothing without collateral."""
    if collateral is None:
        return NOT_EVALUATED, {}
    tcb_info, qe_identity = verify_intel_collateral(collateral, pck=quote.pck, root=root, now=now)
    qe_report = quote.signature_data.qe_report
    result = evaluate_tcb(tcb_info, qe_identity, pck=quote.pck, qe_report=qe_report, td=td)
    return result.status, {"tcb": result.facts(), "advisory_ids": list(result.advisory_ids)}


def evaluate_tcb(
    tcb_info: Mapping[str, Any], qe_identity: Mapping[str, Any], *, pck: Pck, qe_report: EnclaveReport,
    td: TdxTcb | None = None,
) -> TcbResult:
    """Pure: appraise already verified TCB info and QE identity JSON for this PCK / QE / TD."""
    try:
        return _evaluate(tcb_info, qe_identity, pck, qe_report, td)
    except (KeyError, TypeError, ValueError, IndexError):
        raise VerificationError("collateral.parse") from None


def _evaluate(
    tcb_info: Mapping[str, Any], qe_identity: Mapping[str, Any], pck: Pck, qe_report: EnclaveReport,
    td: TdxTcb | None,
) -> TcbResult:
    if tcb_info["id"] != ("TDX" if td else "SGX") or tcb_info["version"] != 3:
        raise VerificationError("collateral.mismatch")
    if bytes.fromhex(tcb_info["fmspc"]) != pck.fmspc or bytes.fromhex(tcb_info["pceId"]) != pck.pce_id:
        raise VerificationError("collateral.mismatch")
    qe_status, qe_advisories = _qe_level(qe_identity, qe_report, "TD_QE" if td else "QE")
    module_status, module_advisories = _module_level(tcb_info, td) if td else (None, [])
    level = _platform_level(tcb_info, pck, td)
    platform_status = _status(level)
    status = _converge(_converge(platform_status, qe_status), module_status)
    advisories = dict.fromkeys([*level.get("advisoryIDs", []), *qe_advisories, *module_advisories])
    return TcbResult(
        status=status,
        platform_status=platform_status,
        qe_status=qe_status,
        module_status=module_status,
        advisory_ids=tuple(str(a) for a in advisories),
        tcb_date=str(level["tcbDate"]),
        evaluation_data_number=int(tcb_info["tcbEvaluationDataNumber"]),
    )


def _status(level: Mapping[str, Any]) -> str:
    status = level["tcbStatus"]
    if status not in INTEL_TCB_STATUSES:
        raise ValueError("unknown TCB status")
    return str(status)


def _svns(components: Sequence[Mapping[str, Any]]) -> list[int]:
    svns = [int(c["svn"]) for c in components]
    if len(svns) != 16:
        raise ValueError("expected 16 TCB components")
    return svns


def _platform_level(tcb_info: Mapping[str, Any], pck: Pck, td: TdxTcb | None) -> Mapping[str, Any]:
    module_versioned = bool(td and td.tee_tcb_svn[1] > 0 and "tdxModuleIdentities" in tcb_info)
    first = 2 if module_versioned else 0  # module SVN and version are appraised by module identity
    for level in tcb_info["tcbLevels"]:
        tcb = level["tcb"]
        if pck.pce_svn < int(tcb["pcesvn"]):
            continue
        if any(have < need for have, need in zip(pck.tcb_components, _svns(tcb["sgxtcbcomponents"]))):
            continue
        if td is not None:
            tdx = _svns(tcb["tdxtcbcomponents"])
            if any(have < need for have, need in zip(td.tee_tcb_svn[first:], tdx[first:])):
                continue
            if not module_versioned and tdx[1] != td.tee_tcb_svn[1]:
                raise VerificationError("tcb.no_match")  # TCB info not for this module version
        return level
    raise VerificationError("tcb.no_match")


def _masked_equal(value: bytes, mask_hex: str, expected_hex: str) -> bool:
    mask, expected = bytes.fromhex(mask_hex), bytes.fromhex(expected_hex)
    return len(mask) == len(value) == len(expected) and bytes(v & m for v, m in zip(value, mask)) == expected


def _qe_level(identity: Mapping[str, Any], qe: EnclaveReport, expected_id: str) -> tuple[str, list[str]]:
    if identity["id"] != expected_id or identity["version"] != 2:
        raise VerificationError("collateral.mismatch")
    if (
        bytes.fromhex(identity["mrsigner"]) != qe.mrsigner
        or int(identity["isvprodid"]) != qe.isv_prod_id
        or not _masked_equal(qe.raw[16:20], identity["miscselectMask"], identity["miscselect"])
        or not _masked_equal(qe.attributes, identity["attributesMask"], identity["attributes"])
    ):
        raise VerificationError("collateral.qe_identity")
    for level in identity["tcbLevels"]:
        if qe.isv_svn >= int(level["tcb"]["isvsvn"]):
            return _status(level), list(level.get("advisoryIDs", []))
    raise VerificationError("tcb.no_match")


def _check_module(module: Mapping[str, Any], td: TdxTcb) -> None:
    if bytes.fromhex(module["mrsigner"]) != td.mr_signer_seam or not _masked_equal(
        td.seam_attributes, module["attributesMask"], module["attributes"]
    ):
        raise VerificationError("collateral.tdx_module")


def _module_level(tcb_info: Mapping[str, Any], td: TdxTcb) -> tuple[str | None, list[str]]:
    _check_module(tcb_info["tdxModule"], td)
    version = td.tee_tcb_svn[1]
    if version == 0 or "tdxModuleIdentities" not in tcb_info:
        return None, []
    for identity in tcb_info["tdxModuleIdentities"]:
        if identity["id"] == f"TDX_{version:02X}":
            _check_module(identity, td)
            for level in identity["tcbLevels"]:
                if td.tee_tcb_svn[0] >= int(level["tcb"]["isvsvn"]):
                    return _status(level), list(level.get("advisoryIDs", []))
    raise VerificationError("tcb.no_match")


def _converge(platform: str, other: str | None) -> str:
    """Combine the platform status with the QE or TDX module status (Intel QVL rules)."""
    if other is None or other == "UpToDate" or platform == "Revoked":
        return platform
    if other == "Revoked":
        return "Revoked"
    if other == "OutOfDate":
        return "OutOfDateConfigurationNeeded" if platform in _CONFIGURATION else "OutOfDate"
    return platform if platform != "UpToDate" else other
