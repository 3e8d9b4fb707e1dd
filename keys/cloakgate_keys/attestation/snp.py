"""AMD SEV-SNP attestation reports (1184 bytes), signed by a VCEK (ARK -> ASK -> VCEK) or a
VLEK (ARK -> ASVK -> VLEK).

The AMD chain uses RSA-PSS and VCEK/VLEK serial number 0, both outside what `cryptography`'s
X.509 layer accepts, so certificates are read with `certs` and each link is verified by hand
against an ARK pinned by SHA-256 fingerprint. Layout: ATTESTATION.md §5.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from cloakgate_keys.attestation import anchors, der
from cloakgate_keys.attestation.certs import RawCert, parse_cert, verify_signature
from cloakgate_keys.attestation.claims import Claims
from cloakgate_keys.attestation.errors import VerificationError
from cloakgate_keys.attestation.policy import NOT_EVALUATED, enforce, require_aware

REPORT_LEN = 0x4A0
SIGNED_LEN = 0x2A0
SUPPORTED_VERSIONS = frozenset({2, 3, 5})
_POLICY_RESERVED_1 = 1 << 17
_POLICY_DEBUG = 1 << 19
_POLICY_MBZ = ~((1 << 26) - 1) & 0xFFFFFFFFFFFFFFFF
_SIGNING_KEYS = {0: "vcek", 1: "vlek"}
_LEAF_CN = {"vcek": "SEV-VCEK", "vlek": "SEV-VLEK"}
_AMD_EXT = "1.3.6.1.4.1.3704.1"
_PRODUCT_NAME, _HWID, _CSP_ID = f"{_AMD_EXT}.2", f"{_AMD_EXT}.4", f"{_AMD_EXT}.5"
# TCB_VERSION byte positions per component; the Turin layout adds FMC and moves the others.
_TCB_LAYOUT = {"bootloader": 0, "tee": 1, "snp": 6, "microcode": 7}
_TCB_LAYOUT_TURIN = {"fmc": 0, "bootloader": 1, "tee": 2, "snp": 3, "microcode": 7}
_SPL_OIDS = {"bootloader": "3.1", "tee": "3.2", "snp": "3.3", "microcode": "3.8", "fmc": "3.9"}


@dataclass(frozen=True)
class Report:
    raw: bytes
    version: int
    guest_svn: int
    policy: int
    vmpl: int
    signature_algo: int
    signing_key: str | None

    @classmethod
    def parse(cls, data: bytes) -> Report:
        if len(data) != REPORT_LEN:
            raise VerificationError("snp.parse")
        version, guest_svn, policy = struct.unpack_from("<IIQ", data, 0)
        vmpl, algo = struct.unpack_from("<II", data, 0x30)
        signer_info = struct.unpack_from("<I", data, 0x48)[0]
        if version not in SUPPORTED_VERSIONS:
            raise VerificationError("snp.version")
        reserved = [data[0x4C:0x50], data[(0x18B if version >= 3 else 0x188) : 0x1A0], data[0x208:SIGNED_LEN]]
        if version < 5:
            reserved.append(data[0x1F8:0x208])
        if (
            algo != 1
            or not policy & _POLICY_RESERVED_1
            or policy & _POLICY_MBZ
            or any(any(chunk) for chunk in reserved)
            or any(data[SIGNED_LEN + 144 :])
        ):
            raise VerificationError("snp.parse")
        return cls(data, version, guest_svn, policy, vmpl, algo, _SIGNING_KEYS.get(signer_info >> 2 & 0x7))

    def field(self, offset: int, size: int) -> bytes:
        return self.raw[offset : offset + size]

    def tcb(self, offset: int, turin: bool) -> dict[str, int]:
        layout = _TCB_LAYOUT_TURIN if turin else _TCB_LAYOUT
        return {name: self.raw[offset + pos] for name, pos in layout.items()}


@dataclass(frozen=True)
class AmdChain:
    """A verified VCEK/VLEK with the facts its AMD extensions certify."""

    leaf: RawCert
    signing_key: str  # "vcek" | "vlek"
    product: str  # "Milan" | "Genoa" | "Turin"
    product_name: str  # as in the certificate, e.g. "Milan-B0"
    spls: dict[str, int]  # security patch levels the certificate is issued for
    hwid: bytes | None  # VCEK only: CHIP_ID (64 bytes; 8 on Turin)
    csp_id: str | None  # VLEK only: the cloud provider it was issued to

    @property
    def turin(self) -> bool:
        return self.product == "Turin"


def _ext_value(cert: RawCert, oid: str) -> der.Tlv | None:
    ext = cert.extension(oid)
    return None if ext is None else der.read_one(ext.value)


def verify_amd_chain(candidates: Iterable[bytes], *, signing_key: str, now: datetime) -> AmdChain:
    """Find leaf -> ASK/ASVK -> ARK among the DER `candidates` (any order, extras ignored), pin
    the ARK by fingerprint for the leaf's product, verify every link (RSA-PSS) and validity."""
    try:
        certs = [parse_cert(c) for c in dict.fromkeys(candidates)]
        leaves = [c for c in certs if c.subject_cn == _LEAF_CN[signing_key]]
        if len(leaves) != 1:
            raise VerificationError("snp.cert_chain")
        leaf = leaves[0]
        ask = next(c for c in certs if c.subject == leaf.issuer and c is not leaf)
        ark = next(c for c in certs if c.subject == ask.issuer and c.issuer == c.subject)
        product_name = _ext_value(leaf, _PRODUCT_NAME)
        product = der.decode_string(product_name) if product_name else ""
        spls = {name: der.decode_int(tlv) for name in _SPL_OIDS if (tlv := _ext_value(leaf, _spl_oid(name)))}
        csp_id = _ext_value(leaf, _CSP_ID)
        hwid = leaf.extension(_HWID)
    except (der.DerError, StopIteration, KeyError):
        raise VerificationError("snp.cert_chain") from None
    family = product.split("-")[0]
    if anchors.AMD_ARK_SHA256.get(family) != hashlib.sha256(ark.der).hexdigest():
        raise VerificationError("snp.ark_pin")
    try:
        for cert, issuer in ((ark, ark), (ask, ark), (leaf, ask)):
            verify_signature(cert, issuer.public_key())
    except (InvalidSignature, der.DerError):
        raise VerificationError("snp.cert_chain") from None
    if not all(c.valid_at(now) for c in (ark, ask, leaf)):
        raise VerificationError("snp.cert_chain")
    return AmdChain(
        leaf=leaf,
        signing_key=signing_key,
        product=family,
        product_name=product,
        spls=spls,
        hwid=hwid.value if hwid else None,
        csp_id=der.decode_string(csp_id) if csp_id else None,
    )


def _spl_oid(name: str) -> str:
    return f"{_AMD_EXT}.{_SPL_OIDS[name]}"


def _check_leaf_matches(report: Report, chain: AmdChain) -> dict[str, int]:
    """The VCEK/VLEK certifies REPORTED_TCB (not CURRENT_TCB) and, for a VCEK, the CHIP_ID."""
    reported = report.tcb(0x180, chain.turin)
    if any(chain.spls.get(name) != svn for name, svn in reported.items()):
        raise VerificationError("snp.tcb_mismatch")
    chip_id = report.field(0x1A0, 64)
    if chain.signing_key == "vcek" and any(chip_id):
        hwid = chain.hwid
        if hwid is None or len(hwid) not in (8, 64) or hwid != chip_id[: len(hwid)]:
            raise VerificationError("snp.chip_id")
    return reported


def _verify_signature(report: Report, leaf: RawCert) -> None:
    """ECDSA P-384/SHA-384; R and S are 72-byte LITTLE-endian fields (unlike Intel's)."""
    key = leaf.public_key()
    sig = report.field(SIGNED_LEN, 144)
    r, s = int.from_bytes(sig[:72], "little"), int.from_bytes(sig[72:], "little")
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        raise VerificationError("snp.signature")
    try:
        key.verify(encode_dss_signature(r, s), report.raw[:SIGNED_LEN], ec.ECDSA(hashes.SHA384()))
    except (InvalidSignature, ValueError):
        raise VerificationError("snp.signature") from None


def _tcb_status(reported: Mapping[str, int], min_tcb: Mapping[str, int] | None) -> str:
    if min_tcb is None:
        return NOT_EVALUATED
    if not set(min_tcb) <= set(reported):
        raise VerificationError("snp.min_tcb")
    return "UpToDate" if all(reported[name] >= svn for name, svn in min_tcb.items()) else "OutOfDate"


def _facts(report: Report, chain: AmdChain, reported: Mapping[str, int]) -> dict[str, Any]:
    f = report.field
    turin = chain.turin
    out: dict[str, Any] = {
        "report_version": report.version,
        "guest_svn": report.guest_svn,
        "policy": report.policy,
        "vmpl": report.vmpl,
        "signature_algo": report.signature_algo,
        "platform_info": struct.unpack_from("<Q", report.raw, 0x40)[0],
        "signing_key": report.signing_key,
        "author_key_en": bool(report.raw[0x48] & 1),
        "family_id": f(0x10, 16).hex(),
        "image_id": f(0x20, 16).hex(),
        "host_data": f(0xC0, 32).hex(),
        "id_key_digest": f(0xE0, 48).hex(),
        "author_key_digest": f(0x110, 48).hex(),
        "report_id": f(0x140, 32).hex(),
        "report_id_ma": f(0x160, 32).hex(),
        "chip_id": f(0x1A0, 64).hex(),
        "reported_tcb": dict(reported),
        "current_tcb": report.tcb(0x38, turin),
        "committed_tcb": report.tcb(0x1E0, turin),
        "launch_tcb": report.tcb(0x1F0, turin),
        "reported_tcb_raw": struct.unpack_from("<Q", report.raw, 0x180)[0],
        "current_firmware": {"major": f(0x1EA, 1)[0], "minor": f(0x1E9, 1)[0], "build": f(0x1E8, 1)[0]},
        "committed_firmware": {"major": f(0x1EE, 1)[0], "minor": f(0x1ED, 1)[0], "build": f(0x1EC, 1)[0]},
        "product": chain.product,
        "product_name": chain.product_name,
    }
    if report.version >= 3:
        out["cpuid_fms"] = f(0x188, 3).hex()
    if report.version >= 5:
        out["launch_mit_vector"] = struct.unpack_from("<Q", report.raw, 0x1F8)[0]
        out["current_mit_vector"] = struct.unpack_from("<Q", report.raw, 0x200)[0]
    if chain.csp_id is not None:
        out["csp_id"] = chain.csp_id
    return out


def appraise_snp_report(
    report: bytes, *, certs: Iterable[bytes], now: datetime, min_tcb: Mapping[str, int] | None = None
) -> Claims:
    """Verify the report with a VCEK/VLEK and its chain found among `certs` (DER certificates:
    the leaf, ASK/ASVK and ARK, in any order, extras ignored). No debug/TCB policy.

    `min_tcb` (e.g. {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115}) turns the TCB status
    into "UpToDate" / "OutOfDate" against REPORTED_TCB; without it the status is NotEvaluated.
    """
    require_aware(now)
    parsed = Report.parse(report)
    if parsed.signing_key is None:
        raise VerificationError("snp.signing_key")
    chain = verify_amd_chain(certs, signing_key=parsed.signing_key, now=now)
    reported = _check_leaf_matches(parsed, chain)
    _verify_signature(parsed, chain.leaf)
    return Claims(
        tee="snp",
        measurement=parsed.field(0x90, 48).hex(),
        report_data=parsed.field(0x50, 64),
        debug=bool(parsed.policy & _POLICY_DEBUG),
        tcb_status=_tcb_status(reported, min_tcb),
        svn=parsed.guest_svn,
        extra=_facts(parsed, chain, reported),
    )


def verify_snp_report(
    report: bytes,
    *,
    certs: Iterable[bytes],
    now: datetime,
    min_tcb: Mapping[str, int] | None = None,
    allow_debug: bool = False,
    accepted_tcb: Set[str] | None = None,
) -> Claims:
    claims = appraise_snp_report(report, certs=certs, now=now, min_tcb=min_tcb)
    return enforce(claims, allow_debug=allow_debug, accepted_tcb=accepted_tcb)
