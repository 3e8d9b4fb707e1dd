"""Intel DCAP ECDSA quotes: what SGX (v3/v4) and TDX (v4/v5) quotes share.

The header, the 384-byte enclave report body (ISV enclave in SGX quotes, QE in both), the
signature data in its v3 (flat) and v4+ (certification data type 6) layouts, and the
verification of everything that is not body-specific: PCK chain to the pinned root, QE report
signature, QE report data binding of the attestation key, QE identity, quote signature.
Offsets follow ATTESTATION.md §2-§3; all integers little-endian, signatures big-endian r||s.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from cloakgate_keys.attestation import anchors
from cloakgate_keys.attestation.errors import VerificationError
from cloakgate_keys.attestation.pck import Pck, verify_pck_chain

HEADER_LEN = 48
REPORT_BODY_LEN = 384
ATT_KEY_TYPE_ECDSA_P256 = 2
TEE_TYPE_SGX = 0x00000000
TEE_TYPE_TDX = 0x00000081
CERT_TYPE_PCK_CHAIN = 5
CERT_TYPE_QE_REPORT = 6


@dataclass(frozen=True)
class QuoteHeader:
    version: int
    att_key_type: int
    tee_type: int  # v4+; 0 (SGX) for v3
    qe_svn: int  # v3 only
    pce_svn: int  # v3 only
    qe_vendor_id: bytes
    user_data: bytes

    @classmethod
    def parse(cls, quote: bytes, *, kind: str) -> QuoteHeader:
        if len(quote) < HEADER_LEN:
            raise VerificationError(f"{kind}.parse")
        version, key_type, tee_type, qe_svn, pce_svn = struct.unpack_from("<HHIHH", quote, 0)
        header = cls(version, key_type, tee_type if version >= 4 else TEE_TYPE_SGX, qe_svn, pce_svn,
                     quote[12:28], quote[28:48])
        if key_type != ATT_KEY_TYPE_ECDSA_P256:
            raise VerificationError(f"{kind}.key_type")
        if header.qe_vendor_id != anchors.INTEL_QE_VENDOR_ID:
            raise VerificationError(f"{kind}.qe_vendor")
        if (version == 3 and tee_type != 0) or (version >= 4 and (qe_svn, pce_svn) != (0, 0)):
            raise VerificationError(f"{kind}.parse")  # reserved header fields must be zero
        return header

    def facts(self) -> dict[str, Any]:
        out: dict[str, Any] = {"quote_version": self.version, "user_data": self.user_data.hex()}
        if self.version == 3:
            out.update(qe_svn=self.qe_svn, pce_svn=self.pce_svn)
        return out


@dataclass(frozen=True)
class EnclaveReport:
    """`sgx_report_body_t`: the ISV enclave of an SGX quote, or any quote's QE report."""

    raw: bytes
    cpusvn: bytes
    miscselect: int
    isv_ext_prod_id: bytes
    attributes: bytes  # FLAGS (u64) || XFRM (u64), as in the report
    mrenclave: bytes
    mrsigner: bytes
    config_id: bytes
    isv_prod_id: int
    isv_svn: int
    config_svn: int
    isv_family_id: bytes
    report_data: bytes

    @classmethod
    def parse(cls, body: bytes) -> EnclaveReport:
        if len(body) != REPORT_BODY_LEN:
            raise ValueError("report body must be 384 bytes")
        isv_prod_id, isv_svn, config_svn = struct.unpack_from("<HHH", body, 256)
        return cls(
            raw=bytes(body),
            cpusvn=body[0:16],
            miscselect=struct.unpack_from("<I", body, 16)[0],
            isv_ext_prod_id=body[32:48],
            attributes=body[48:64],
            mrenclave=body[64:96],
            mrsigner=body[128:160],
            config_id=body[192:256],
            isv_prod_id=isv_prod_id,
            isv_svn=isv_svn,
            config_svn=config_svn,
            isv_family_id=body[304:320],
            report_data=body[320:384],
        )

    @property
    def flags(self) -> int:
        return int.from_bytes(self.attributes[0:8], "little")

    @property
    def xfrm(self) -> int:
        return int.from_bytes(self.attributes[8:16], "little")

    @property
    def debug(self) -> bool:
        return bool(self.flags & 0x2)


@dataclass(frozen=True)
class SignatureData:
    """The parts of the quote signature data that v3 and v4+ layouts share."""

    quote_signature: bytes  # raw r||s over the signed region, by the attestation key
    attestation_key: bytes  # raw X||Y, P-256
    qe_report: EnclaveReport
    qe_report_signature: bytes  # raw r||s over the QE report, by the PCK leaf key
    qe_auth_data: bytes
    pck_chain_pem: bytes

    @classmethod
    def parse(cls, data: bytes, *, version: int) -> SignatureData:
        """Strict: every nested length must fit and the structure must fill `data` exactly."""
        reader = _Reader(data)
        quote_signature, attestation_key = reader.take(64), reader.take(64)
        if version >= 4:
            cert_type, size = reader.unpack("<HI")
            if cert_type != CERT_TYPE_QE_REPORT:
                raise ValueError("expected QE report certification data")
            reader = _Reader(reader.take(size), end_of=reader)
        qe_report, qe_report_signature = reader.take(REPORT_BODY_LEN), reader.take(64)
        qe_auth_data = reader.take(reader.unpack("<H")[0])
        cert_type, size = reader.unpack("<HI")
        if cert_type != CERT_TYPE_PCK_CHAIN:
            raise ValueError("expected a PCK certificate chain")
        pem = reader.take(size)
        reader.finish()
        return cls(quote_signature, attestation_key, EnclaveReport.parse(qe_report), qe_report_signature,
                   qe_auth_data, pem)


class _Reader:
    """Bounds-checked cursor over a byte string. `end_of`: a parent that must also be finished."""

    def __init__(self, data: bytes, end_of: _Reader | None = None) -> None:
        self.data, self.pos, self.parent = data, 0, end_of

    def take(self, size: int) -> bytes:
        if self.pos + size > len(self.data):
            raise ValueError("truncated")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def unpack(self, fmt: str) -> tuple[int, ...]:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))

    def finish(self) -> None:
        if self.pos != len(self.data):
            raise ValueError("unexpected bytes inside the signature data")
        if self.parent is not None:
            self.parent.finish()


def verify_raw_ecdsa_p256(public_key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> bool:
    """Intel's signature encoding: big-endian r||s, 32 bytes each, ECDSA P-256 with SHA-256."""
    if len(signature) != 64:
        return False
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    der_sig = encode_dss_signature(r, s)
    try:
        public_key.verify(der_sig, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class VerifiedQuote:
    header: QuoteHeader
    signature_data: SignatureData
    pck: Pck
    signed_region: bytes
    trailing_bytes: int  # after the signature data; not covered by any signature, ignored

    def facts(self) -> dict[str, Any]:
        qe = self.signature_data.qe_report
        return {
            **self.header.facts(),
            "qe": {
                "mrenclave": qe.mrenclave.hex(),
                "mrsigner": qe.mrsigner.hex(),
                "isv_prod_id": qe.isv_prod_id,
                "isv_svn": qe.isv_svn,
                "attributes_flags": qe.flags,
            },
            "pck": self.pck.facts(),
            "trailing_bytes": self.trailing_bytes,
        }


def verify_quote(
    quote: bytes,
    header: QuoteHeader,
    *,
    kind: str,
    signed_len: int,
    qe_identity: tuple[bytes, int],
    now: datetime,
    root: x509.Certificate | None = None,
) -> VerifiedQuote:
    """Verify the ECDSA envelope of a quote whose signed region is `quote[:signed_len]`.

    Order: PCK chain at `now` -> QE report signature (PCK key) -> QE report data binds the
    attestation key -> QE identity (Intel's QE, by MRSIGNER and ISVPRODID) -> quote signature.
    """
    root = anchors.intel_sgx_root() if root is None else root
    try:
        (sig_len,) = struct.unpack_from("<I", quote, signed_len)
        end = signed_len + 4 + sig_len
        if end > len(quote):
            raise ValueError("signature data beyond the quote")
        sig = SignatureData.parse(quote[signed_len + 4 : end], version=header.version)
    except (ValueError, struct.error):
        raise VerificationError(f"{kind}.parse") from None
    pck = verify_pck_chain(sig.pck_chain_pem, kind=kind, root=root, now=now)
    pck_key = pck.leaf.public_key()
    if not isinstance(pck_key, ec.EllipticCurvePublicKey) or not verify_raw_ecdsa_p256(
        pck_key, sig.qe_report_signature, sig.qe_report.raw
    ):
        raise VerificationError(f"{kind}.qe_signature")
    expected = hashlib.sha256(sig.attestation_key + sig.qe_auth_data).digest() + bytes(32)
    if sig.qe_report.report_data != expected:
        raise VerificationError(f"{kind}.qe_binding")
    if (sig.qe_report.mrsigner, sig.qe_report.isv_prod_id) != qe_identity:
        raise VerificationError(f"{kind}.qe_identity")
    try:
        key = ec.EllipticCurvePublicNumbers(
            int.from_bytes(sig.attestation_key[:32], "big"),
            int.from_bytes(sig.attestation_key[32:], "big"),
            ec.SECP256R1(),
        ).public_key()
    except ValueError:
        raise VerificationError(f"{kind}.quote_signature") from None
    signed_region = quote[:signed_len]
    if not verify_raw_ecdsa_p256(key, sig.quote_signature, signed_region):
        raise VerificationError(f"{kind}.quote_signature")
    return VerifiedQuote(header, sig, pck, signed_region, len(quote) - end)
