"""Intel PCK certificates: the chain in a quote's certification data, and the SGX extension.

The chain is verified to a pinned Intel SGX Root CA with `cryptography`'s policy verifier
(custom extension policies: PCK leaves have no SAN). The SGX extension
(OID 1.2.840.113741.1.13.1) is read with the small DER reader.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from cloakgate_keys.attestation import der
from cloakgate_keys.attestation.errors import VerificationError as EvidenceError

SGX_EXTENSION = "1.2.840.113741.1.13.1"
_PPID, _TCB, _PCEID, _FMSPC, _SGX_TYPE, _PLATFORM_INSTANCE_ID, _CONFIGURATION = (
    f"{SGX_EXTENSION}.{i}" for i in range(1, 8)
)
_CONFIGURATION_FLAGS = {f"{_CONFIGURATION}.1": "dynamic_platform", f"{_CONFIGURATION}.2": "cached_keys",
                        f"{_CONFIGURATION}.3": "smt_enabled"}
_PCESVN = f"{_TCB}.17"
_CPUSVN = f"{_TCB}.18"
_SGX_TYPES = {0: "Standard", 1: "Scalable", 2: "ScalableWithIntegrity"}


@dataclass(frozen=True)
class Pck:
    leaf: x509.Certificate
    intermediate: x509.Certificate
    ca: str  # "processor" or "platform"
    ppid: bytes
    fmspc: bytes
    pce_id: bytes
    pce_svn: int
    cpusvn: bytes
    tcb_components: tuple[int, ...]  # SGX TCB comp 01..16 SVNs
    sgx_type: str | None
    platform_instance_id: bytes | None
    configuration: dict[str, bool]  # Platform CA PCKs: dynamic_platform, cached_keys, smt_enabled

    def facts(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ca": self.ca,
            "fmspc": self.fmspc.hex(),
            "pce_id": self.pce_id.hex(),
            "pce_svn": self.pce_svn,
            "cpusvn": self.cpusvn.hex(),
            "tcb_components": list(self.tcb_components),
            "ppid": self.ppid.hex(),
        }
        if self.sgx_type is not None:
            out["sgx_type"] = self.sgx_type
        if self.platform_instance_id is not None:
            out["platform_instance_id"] = self.platform_instance_id.hex()
        if self.configuration:
            out["configuration"] = dict(self.configuration)
        return out


def _policy_verifier(root: x509.Certificate, now: datetime) -> Any:
    ca_policy = ExtensionPolicy.permit_all().require_present(
        x509.BasicConstraints, Criticality.AGNOSTIC, None
    )
    return (
        PolicyBuilder()
        .store(Store([root]))
        .time(now)
        .max_chain_depth(2)
        .extension_policies(ca_policy=ca_policy, ee_policy=ExtensionPolicy.permit_all())
        .build_client_verifier()
    )


def verify_to_root(leaf: x509.Certificate, intermediates: list[x509.Certificate], *, root: x509.Certificate,
                   now: datetime) -> None:
    """Signatures and validity of `leaf` (through `intermediates`) up to the pinned `root` at `now`."""
    _policy_verifier(root, now).verify(leaf, intermediates)


def verify_pck_chain(pem: bytes, *, kind: str, root: x509.Certificate, now: datetime) -> Pck:
    """Parse certification data type 5 (PEM: leaf, intermediate[, root]) and verify it.

    A root included in the blob must be the pinned root itself (same DER); the pinned copy is
    what the chain is verified against.
    """
    reason = f"{kind}.pck_chain"
    try:
        chain = x509.load_pem_x509_certificates(pem.rstrip(b"\x00"))
    except ValueError:
        raise EvidenceError(reason) from None
    if len(chain) not in (2, 3) or (len(chain) == 3 and chain[2] != root) or root in chain[:2]:
        raise EvidenceError(reason)
    leaf, intermediate = chain[0], chain[1]
    try:
        if leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            raise EvidenceError(reason)  # the leaf must be a PCK certificate, not a CA
        verify_to_root(leaf, [intermediate], root=root, now=now)
    except (VerificationError, ValueError, x509.ExtensionNotFound):
        raise EvidenceError(reason) from None
    try:
        return _parse(leaf, intermediate)
    except (der.DerError, x509.ExtensionNotFound, ValueError, IndexError):
        raise EvidenceError(f"{kind}.pck_extension") from None


def _parse(leaf: x509.Certificate, intermediate: x509.Certificate) -> Pck:
    ext = leaf.extensions.get_extension_for_oid(x509.ObjectIdentifier(SGX_EXTENSION)).value
    if not isinstance(ext, x509.UnrecognizedExtension):
        raise ValueError("unexpected SGX extension type")
    fields = _pairs(ext.value)
    tcb = _pairs(fields[_TCB].raw)
    components = tuple(der.decode_int(tcb[f"{_TCB}.{i}"]) for i in range(1, 17))
    issuer_cn = intermediate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    ca_name = str(issuer_cn[0].value) if issuer_cn else ""
    ca = "processor" if "Processor" in ca_name else "platform" if "Platform" in ca_name else "unknown"
    sgx_type = fields.get(_SGX_TYPE)
    instance = fields.get(_PLATFORM_INSTANCE_ID)
    configuration = {
        _CONFIGURATION_FLAGS[oid]: value.content != b"\x00"
        for oid, value in (_pairs(fields[_CONFIGURATION].raw) if _CONFIGURATION in fields else {}).items()
        if oid in _CONFIGURATION_FLAGS and value.tag == der.BOOLEAN
    }
    return Pck(
        leaf=leaf,
        intermediate=intermediate,
        ca=ca,
        ppid=_octets(fields[_PPID], 16),
        fmspc=_octets(fields[_FMSPC], 6),
        pce_id=_octets(fields[_PCEID], 2),
        pce_svn=der.decode_int(tcb[_PCESVN]),
        cpusvn=_octets(tcb[_CPUSVN], 16),
        tcb_components=components,
        sgx_type=_SGX_TYPES.get(der.decode_int(sgx_type), "unknown") if sgx_type else None,
        platform_instance_id=instance.content if instance and instance.tag == der.OCTET_STRING else None,
        configuration=configuration,
    )


def _pairs(data: bytes) -> dict[str, der.Tlv]:
    """SEQUENCE OF SEQUENCE { OID, value } -> {dotted OID: value TLV}."""
    out: dict[str, der.Tlv] = {}
    for item in der.children(der.read_one(data, der.SEQUENCE).content):
        parts = der.children(item.content)
        if item.tag != der.SEQUENCE or len(parts) != 2 or parts[0].tag != der.OID:
            raise der.DerError("bad SGX extension entry")
        out[der.decode_oid(parts[0].content)] = parts[1]
    return out


def _octets(tlv: der.Tlv, size: int) -> bytes:
    if tlv.tag != der.OCTET_STRING or len(tlv.content) != size:
        raise der.DerError("bad SGX extension value")
    return tlv.content
