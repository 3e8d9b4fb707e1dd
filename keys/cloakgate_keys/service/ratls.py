"""RA-TLS: a fresh TLS key per start, a self-signed certificate carrying evidence that binds the key.

Format (interoperable RA-TLS, ATTESTATION.md §7.2 and §10): non-critical extension 2.23.133.5.4.9
(TCG DICE tagged evidence) whose value is CBOR ``tag([bstr evidence, bstr claims-buffer, ...])`` with
``claims-buffer = CBOR {"pubkey-hash": bstr(CBOR [1, bstr SHA-256(SubjectPublicKeyInfo DER)])}`` and
the evidence's report data = SHA-256(claims-buffer) || 32 zero bytes. Tags:

- 60000 (IANA, Intel TEE quote): SGX or TDX DCAP quote — what Gramine and the Intel SDK emit;
- 0x63670001 (cloakgate private): simulated evidence (``attestation.simulated``);
- 0x63670002 (cloakgate private): SEV-SNP report, array ``[report, claims-buffer, certificate table]``
  (no IANA tag exists for SNP).

The certificate's dates are not meaningful (verifiers ignore them); freshness of the key comes from
the TLS handshake itself, which proves possession of the attested key.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import ssl
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ..attestation.claims import Claims
from ..attestation.providers import Evidence, EvidenceProvider
from . import cbor

TCG_DICE_OID = x509.ObjectIdentifier("2.23.133.5.4.9")
TAG_QUOTE = 60000
TAG_SIMULATED = 0x63670001
TAG_SNP = 0x63670002
HASH_ALGS = {1: hashlib.sha256, 7: hashlib.sha384, 8: hashlib.sha512}  # IANA Named Information ids


class RatlsError(Exception):
    """The certificate does not carry valid, bound evidence. ``code`` says which check failed."""

    def __init__(self, code: str):
        self.code = f"cloakgate_keys.ratls.{code}"
        super().__init__(self.code)


def spki_der(cert_or_key: x509.Certificate | ec.EllipticCurvePrivateKey) -> bytes:
    pub = cert_or_key.public_key()
    return pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def claims_buffer(spki: bytes) -> bytes:
    return cbor.encode({"pubkey-hash": cbor.encode([1, hashlib.sha256(spki).digest()])})


def report_data_for(claims_buf: bytes) -> bytes:
    return hashlib.sha256(claims_buf).digest() + bytes(32)


def extension_value(evidence: Evidence, claims_buf: bytes) -> bytes:
    if evidence.kind in ("sgx", "tdx"):
        return cbor.encode(cbor.Tag(TAG_QUOTE, [evidence.data, claims_buf]))
    if evidence.kind == "simulated":
        return cbor.encode(cbor.Tag(TAG_SIMULATED, [evidence.data, claims_buf]))
    if evidence.kind == "snp":
        return cbor.encode(cbor.Tag(TAG_SNP, [evidence.data, claims_buf, evidence.aux]))
    raise RatlsError("unsupported_kind")


def build_certificate(key: ec.EllipticCurvePrivateKey, ext_value: bytes, *, now: datetime) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cloakgate"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "cloakgate key service RA-TLS")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1 | 1)
        .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.UnrecognizedExtension(TCG_DICE_OID, ext_value), critical=False)
        .sign(key, hashes.SHA384())
    )
    return cert.public_bytes(serialization.Encoding.DER)


@dataclass(frozen=True, eq=False)
class RatlsIdentity:
    """The service's TLS identity for one run: key (memory only), certificate and its evidence."""

    cert_der: bytes
    key: ec.EllipticCurvePrivateKey = field(repr=False)
    evidence: Evidence = field(repr=False)

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
        _load_chain(ctx, self.cert_der, self.key)
        return ctx


def build_identity(provider: EvidenceProvider, *, now: datetime) -> RatlsIdentity:
    """A fresh P-384 key and a certificate whose evidence binds it."""
    key = ec.generate_private_key(ec.SECP384R1())
    claims = claims_buffer(spki_der(key))
    evidence = provider.evidence(report_data_for(claims))
    return RatlsIdentity(build_certificate(key, extension_value(evidence, claims), now=now), key, evidence)


def _load_chain(ctx: ssl.SSLContext, cert_der: bytes, key: ec.EllipticCurvePrivateKey) -> None:
    """``ssl`` loads keys only from files: hand it the key encrypted under a one-time password, in an
    anonymous memory file where the platform has one (memfd), else in a temporary file removed at once."""
    password = secrets.token_bytes(32)
    pem = ssl.DER_cert_to_PEM_cert(cert_der).encode() + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password))
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        fd = os.memfd_create("cloakgate-ratls", os.MFD_CLOEXEC)
        try:
            os.write(fd, pem)
            ctx.load_cert_chain(f"/proc/self/fd/{fd}", password=password)
        finally:
            os.close(fd)
        return
    with tempfile.NamedTemporaryFile(prefix="cloakgate-ratls-", delete=True) as f:
        f.write(pem)
        f.flush()
        ctx.load_cert_chain(f.name, password=password)


@dataclass(frozen=True)
class RatlsEvidence:
    """What a certificate carries, parsed but not yet verified."""

    kind: str
    data: bytes = field(repr=False)
    aux: bytes = field(repr=False)
    claims_buffer: bytes = field(repr=False)
    spki: bytes = field(repr=False)


def _quote_kind(quote: bytes) -> str:
    if len(quote) < 8:
        raise RatlsError("malformed_evidence")
    version = int.from_bytes(quote[0:2], "little")
    tee_type = int.from_bytes(quote[4:8], "little")
    return "tdx" if version >= 4 and tee_type == 0x81 else "sgx"


def parse_certificate(der: bytes) -> RatlsEvidence:
    try:
        cert = x509.load_der_x509_certificate(der)
        value = cert.extensions.get_extension_for_oid(TCG_DICE_OID).value
        cert.verify_directly_issued_by(cert)
    except x509.ExtensionNotFound as e:
        raise RatlsError("no_evidence") from e
    except Exception as e:  # malformed certificate or bad self-signature
        raise RatlsError("malformed_certificate") from e
    if not isinstance(value, x509.UnrecognizedExtension):
        raise RatlsError("malformed_evidence")
    try:
        tagged = cbor.decode(value.value)
    except cbor.CBORError as e:
        raise RatlsError("malformed_evidence") from e
    if not isinstance(tagged, cbor.Tag) or not isinstance(tagged.value, list):
        raise RatlsError("malformed_evidence")
    items = tagged.value
    if not all(isinstance(x, bytes) for x in items):
        raise RatlsError("malformed_evidence")
    if tagged.tag == TAG_QUOTE and len(items) == 2:
        kind, aux = _quote_kind(items[0]), b""
    elif tagged.tag == TAG_SIMULATED and len(items) == 2:
        kind, aux = "simulated", b""
    elif tagged.tag == TAG_SNP and len(items) == 3:
        kind, aux = "snp", items[2]
    else:
        raise RatlsError("unsupported_evidence")
    return RatlsEvidence(kind, items[0], aux, items[1], spki_der(cert))


def check_binding(parsed: RatlsEvidence, claims: Claims) -> None:
    """The evidence's report data must be SHA-256(claims-buffer) || zeros, and the claims-buffer's
    pubkey-hash must be the hash of the certificate's (= the TLS peer's) public key."""
    if claims.report_data != report_data_for(parsed.claims_buffer):
        raise RatlsError("binding")
    try:
        claims_map = cbor.decode(parsed.claims_buffer)
        ph = claims_map["pubkey-hash"] if isinstance(claims_map, dict) else None
        alg, digest = cbor.decode(ph) if isinstance(ph, bytes) else (None, None)
    except (cbor.CBORError, KeyError, TypeError, ValueError) as e:
        raise RatlsError("binding") from e
    h = HASH_ALGS.get(alg) if isinstance(alg, int) else None
    if h is None or not isinstance(digest, bytes) or h(parsed.spki).digest() != digest:
        raise RatlsError("binding")
