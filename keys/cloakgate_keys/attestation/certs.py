"""Lenient X.509 parsing for certificates that `cryptography` refuses or warns about.

AMD VCEK/VLEK certificates carry serial number 0 (`cryptography` warns now and will refuse),
and Gramine RA-TLS certificates encode ecdsa-with-SHA256 with NULL parameters (refused by
`cryptography` >= 50). This module reads the few fields the verifiers need straight from the
DER and verifies signatures with `cryptography`'s primitives. It does no path building and no
policy: callers decide which issuer key to check a certificate against.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from cloakgate_keys.attestation import der

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.DOTALL)
_COMMON_NAME = "2.5.4.3"

_ECDSA_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "1.2.840.10045.4.3.2": hashes.SHA256,
    "1.2.840.10045.4.3.3": hashes.SHA384,
    "1.2.840.10045.4.3.4": hashes.SHA512,
}
_RSA_PKCS1_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "1.2.840.113549.1.1.11": hashes.SHA256,
    "1.2.840.113549.1.1.12": hashes.SHA384,
    "1.2.840.113549.1.1.13": hashes.SHA512,
}
_HASH_OIDS: dict[str, type[hashes.HashAlgorithm]] = {
    "2.16.840.1.101.3.4.2.1": hashes.SHA256,
    "2.16.840.1.101.3.4.2.2": hashes.SHA384,
    "2.16.840.1.101.3.4.2.3": hashes.SHA512,
}
RSASSA_PSS = "1.2.840.113549.1.1.10"
_MGF1 = "1.2.840.113549.1.1.8"


@dataclass(frozen=True)
class Extension:
    oid: str
    oid_content: bytes  # the raw OID content octets (Gramine's legacy OID needs them)
    critical: bool
    value: bytes  # content of the extnValue OCTET STRING


@dataclass(frozen=True)
class RawCert:
    der: bytes
    tbs: bytes
    serial: int
    signature_oid: str
    signature_params: bytes  # raw parameters TLV, or b"" when absent
    signature: bytes
    issuer: bytes  # raw Name DER
    subject: bytes  # raw Name DER
    not_before: datetime
    not_after: datetime
    spki: bytes  # raw SubjectPublicKeyInfo DER
    extensions: tuple[Extension, ...]

    def extension(self, oid: str) -> Extension | None:
        for ext in self.extensions:
            if ext.oid == oid:
                return ext
        return None

    def extension_by_content(self, oid_content: bytes) -> Extension | None:
        for ext in self.extensions:
            if ext.oid_content == oid_content:
                return ext
        return None

    @property
    def subject_cn(self) -> str | None:
        return _common_name(self.subject)

    def public_key(self) -> PublicKeyTypes:
        try:
            return serialization.load_der_public_key(self.spki)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise der.DerError("unsupported public key") from exc

    def valid_at(self, now: datetime) -> bool:
        return self.not_before <= now <= self.not_after


def parse_cert(data: bytes) -> RawCert:
    """Parse one DER certificate (no trailing bytes). Raises `der.DerError`."""
    cert = der.read_one(data, der.SEQUENCE)
    parts = der.children(cert.content)
    if len(parts) != 3 or parts[0].tag != der.SEQUENCE or parts[2].tag != der.BIT_STRING:
        raise der.DerError("not a certificate")
    tbs_tlv, outer_alg, sig_bits = parts
    if not sig_bits.content or sig_bits.content[0] != 0:
        raise der.DerError("bad signature bit string")
    fields = der.children(tbs_tlv.content)
    if fields and fields[0].tag == 0xA0:  # [0] EXPLICIT version
        fields = fields[1:]
    if len(fields) < 6:
        raise der.DerError("short TBSCertificate")
    serial, inner_alg, issuer, validity, subject, spki = fields[:6]
    if inner_alg.raw != outer_alg.raw:
        raise der.DerError("signature algorithm mismatch")
    alg_parts = der.children(outer_alg.content)
    if not alg_parts or alg_parts[0].tag != der.OID or len(alg_parts) > 2:
        raise der.DerError("bad AlgorithmIdentifier")
    times = der.children(validity.content)
    if validity.tag != der.SEQUENCE or len(times) != 2:
        raise der.DerError("bad validity")
    if issuer.tag != der.SEQUENCE or subject.tag != der.SEQUENCE or spki.tag != der.SEQUENCE:
        raise der.DerError("bad TBSCertificate")
    return RawCert(
        der=cert.raw,
        tbs=tbs_tlv.raw,
        serial=der.decode_int(serial),
        signature_oid=der.decode_oid(alg_parts[0].content),
        signature_params=alg_parts[1].raw if len(alg_parts) == 2 else b"",
        signature=sig_bits.content[1:],
        issuer=issuer.raw,
        subject=subject.raw,
        not_before=der.decode_time(times[0]),
        not_after=der.decode_time(times[1]),
        spki=spki.raw,
        extensions=_extensions(fields[6:]),
    )


def _extensions(optional: Sequence[der.Tlv]) -> tuple[Extension, ...]:
    out: list[Extension] = []
    for tlv in optional:
        if tlv.tag != 0xA3:  # issuerUniqueID / subjectUniqueID are ignored
            continue
        for ext in der.children(der.read_one(tlv.content, der.SEQUENCE).content):
            items = der.children(ext.content)
            if ext.tag != der.SEQUENCE or not 2 <= len(items) <= 3 or items[0].tag != der.OID:
                raise der.DerError("bad extension")
            critical = len(items) == 3 and items[1].tag == der.BOOLEAN and items[1].content != b"\x00"
            if items[-1].tag != der.OCTET_STRING:
                raise der.DerError("bad extension value")
            oid = items[0].content
            out.append(Extension(der.decode_oid(oid), oid, critical, items[-1].content))
    return tuple(out)


def _common_name(name: bytes) -> str | None:
    for rdn in der.children(der.read_one(name, der.SEQUENCE).content):
        for atv in der.children(rdn.content):
            parts = der.children(atv.content)
            if len(parts) == 2 and parts[0].tag == der.OID:
                if der.decode_oid(parts[0].content) == _COMMON_NAME:
                    return der.decode_string(parts[1])
    return None


def verify_signature(cert: RawCert, issuer_key: PublicKeyTypes) -> None:
    """Check `cert`'s signature with `issuer_key`. Raises `InvalidSignature` on any mismatch."""
    oid = cert.signature_oid
    try:
        if oid in _ECDSA_HASHES and isinstance(issuer_key, ec.EllipticCurvePublicKey):
            if cert.signature_params not in (b"", b"\x05\x00"):  # absent, or NULL (Gramine)
                raise InvalidSignature()
            issuer_key.verify(cert.signature, cert.tbs, ec.ECDSA(_ECDSA_HASHES[oid]()))
        elif oid in _RSA_PKCS1_HASHES and isinstance(issuer_key, rsa.RSAPublicKey):
            issuer_key.verify(cert.signature, cert.tbs, padding.PKCS1v15(), _RSA_PKCS1_HASHES[oid]())
        elif oid == RSASSA_PSS and isinstance(issuer_key, rsa.RSAPublicKey):
            digest, mgf_digest, salt = _pss_params(cert.signature_params)
            pss = padding.PSS(mgf=padding.MGF1(mgf_digest()), salt_length=salt)
            issuer_key.verify(cert.signature, cert.tbs, pss, digest())
        else:
            raise InvalidSignature()
    except (der.DerError, ValueError, IndexError) as exc:
        raise InvalidSignature() from exc


def _pss_params(raw: bytes) -> tuple[type[hashes.HashAlgorithm], type[hashes.HashAlgorithm], int]:
    """RSASSA-PSS-params with explicit hash, MGF1 hash and salt (the defaults, SHA-1, are refused)."""
    digest = mgf_digest = None
    salt = 20
    for field in der.children(der.read_one(raw, der.SEQUENCE).content):
        inner = der.read_one(field.content)
        if field.tag == 0xA0:
            digest = _HASH_OIDS.get(der.decode_oid(der.children(inner.content)[0].content))
        elif field.tag == 0xA1:
            mgf = der.children(inner.content)
            if der.decode_oid(mgf[0].content) != _MGF1:
                raise der.DerError("unsupported MGF")
            mgf_digest = _HASH_OIDS.get(der.decode_oid(der.children(mgf[1].content)[0].content))
        elif field.tag == 0xA2:
            salt = der.decode_int(inner)
    if digest is None or mgf_digest is None or salt < 0:
        raise der.DerError("unsupported PSS parameters")
    return digest, mgf_digest, salt


def split_certificates(data: bytes) -> list[bytes]:
    """DER certificates from a single DER certificate, or from PEM text (one or many blocks,
    NULs and text around them ignored)."""
    if data[:1] == b"\x30":  # DER (which may well contain PEM text, e.g. an RA-TLS quote)
        return [bytes(data)]
    blocks = _PEM_CERT.findall(data)
    if not blocks:
        raise der.DerError("no certificate")
    out: list[bytes] = []
    for block in blocks:
        try:
            out.append(base64.b64decode(b"".join(block.split()), validate=True))
        except (binascii.Error, ValueError) as exc:
            raise der.DerError("bad PEM") from exc
    return out
