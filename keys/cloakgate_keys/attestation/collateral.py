"""Intel PCS collateral: TCB info, QE identity, PCK CRL and root CA CRL.

The bundle format is dcap-qvl's JSON container (as in the vectors): `tcb_info` and
`qe_identity` hold the exact signed JSON text, `*_signature` hex r||s, `*_issuer_chain` PEM,
`pck_crl` / `root_ca_crl` hex DER (PEM also accepted). Signatures are checked over the exact
transmitted bytes, never over a re-serialization. Everything is checked at the injected `now`;
anything outside its window fails closed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import VerificationError as ChainError

from cloakgate_keys.attestation.dcap import verify_raw_ecdsa_p256
from cloakgate_keys.attestation.errors import VerificationError
from cloakgate_keys.attestation.pck import Pck, verify_to_root


@dataclass(frozen=True)
class IntelCollateral:
    tcb_info: bytes
    tcb_info_signature: bytes
    tcb_info_chain: tuple[x509.Certificate, ...]
    qe_identity: bytes
    qe_identity_signature: bytes
    qe_identity_chain: tuple[x509.Certificate, ...]
    pck_crl: x509.CertificateRevocationList
    root_ca_crl: x509.CertificateRevocationList


def parse_intel_collateral(data: bytes) -> IntelCollateral:
    try:
        doc = json.loads(data)

        def chain(key: str) -> tuple[x509.Certificate, ...]:
            return tuple(x509.load_pem_x509_certificates(doc[key].encode()))

        return IntelCollateral(
            tcb_info=doc["tcb_info"].encode("utf-8"),
            tcb_info_signature=bytes.fromhex(doc["tcb_info_signature"]),
            tcb_info_chain=chain("tcb_info_issuer_chain"),
            qe_identity=doc["qe_identity"].encode("utf-8"),
            qe_identity_signature=bytes.fromhex(doc["qe_identity_signature"]),
            qe_identity_chain=chain("qe_identity_issuer_chain"),
            pck_crl=_crl(doc["pck_crl"]),
            root_ca_crl=_crl(doc["root_ca_crl"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        raise VerificationError("collateral.parse") from None


def _crl(value: str) -> x509.CertificateRevocationList:
    if value.lstrip().startswith("-----BEGIN"):
        return x509.load_pem_x509_crl(value.encode())
    return x509.load_der_x509_crl(bytes.fromhex(value))


def extract_signed_json(body: bytes, key: str) -> tuple[bytes, bytes]:
    """From a raw PCS response such as `{"tcbInfo":{...},"signature":"<hex>"}`: the exact bytes of
    the value under `key` (what the signature covers) and the decoded signature."""
    try:
        text = body.decode("utf-8")
        spans = _top_level_spans(text)
        start, end = spans[key]
        return text[start:end].encode("utf-8"), bytes.fromhex(json.loads(text[slice(*spans["signature"])]))
    except (ValueError, KeyError, TypeError, IndexError):
        raise VerificationError("collateral.parse") from None


def _top_level_spans(text: str) -> dict[str, tuple[int, int]]:
    decoder = json.JSONDecoder()

    def skip(i: int) -> int:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        return i

    spans: dict[str, tuple[int, int]] = {}
    i = skip(0)
    if text[i] != "{":
        raise ValueError("not an object")
    i = skip(i + 1)
    while text[i] != "}":
        name, i = decoder.raw_decode(text, i)
        i = skip(i)
        if not isinstance(name, str) or text[i] != ":" or name in spans:
            raise ValueError("bad member")
        start = skip(i + 1)
        _, i = decoder.raw_decode(text, start)
        spans[name] = (start, i)
        i = skip(i)
        if text[i] == ",":
            i = skip(i + 1)
    if skip(i + 1) != len(text):
        raise ValueError("trailing data")
    return spans


def _in_window(now: datetime, start: datetime | None, end: datetime | None) -> bool:
    return start is not None and end is not None and start <= now <= end


def _check_crl(crl: x509.CertificateRevocationList, issuer: x509.Certificate, now: datetime) -> None:
    key = issuer.public_key()
    if crl.issuer != issuer.subject or not isinstance(key, ec.EllipticCurvePublicKey):
        raise VerificationError("collateral.crl")
    if not crl.is_signature_valid(key):
        raise VerificationError("collateral.crl")
    if not _in_window(now, crl.last_update_utc, crl.next_update_utc):
        raise VerificationError("collateral.expired")


def _not_revoked(crl: x509.CertificateRevocationList, cert: x509.Certificate) -> None:
    if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
        raise VerificationError("collateral.revoked")


def _signed_json(
    raw: bytes, signature: bytes, chain: tuple[x509.Certificate, ...], *, root: x509.Certificate,
    root_crl: x509.CertificateRevocationList, now: datetime,
) -> dict[str, Any]:
    signer, *rest = chain or (root,)  # expected: [signing cert] or [signing cert, pinned root]
    if signer == root or any(c != root for c in rest):
        raise VerificationError("collateral.chain")
    try:
        verify_to_root(signer, [], root=root, now=now)
    except (ChainError, ValueError):
        raise VerificationError("collateral.chain") from None
    _not_revoked(root_crl, signer)
    key = signer.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not verify_raw_ecdsa_p256(key, signature, raw):
        raise VerificationError("collateral.signature")
    try:
        doc = json.loads(raw)
        issued = datetime.fromisoformat(doc["issueDate"])
        next_update = datetime.fromisoformat(doc["nextUpdate"])
    except (ValueError, KeyError, TypeError):
        raise VerificationError("collateral.parse") from None
    if not isinstance(doc, dict) or issued.tzinfo is None or next_update.tzinfo is None:
        raise VerificationError("collateral.parse")
    if not _in_window(now, issued, next_update):
        raise VerificationError("collateral.expired")
    return doc


def check_revocation(
    pck: Pck, *, pck_crl: x509.CertificateRevocationList, root_crl: x509.CertificateRevocationList,
    root: x509.Certificate, now: datetime,
) -> None:
    """Both CRLs are signed by their CA and current at `now`; neither the PCK leaf nor its CA is revoked."""
    _check_crl(root_crl, root, now)
    _check_crl(pck_crl, pck.intermediate, now)
    _not_revoked(pck_crl, pck.leaf)
    _not_revoked(root_crl, pck.intermediate)


def verify_intel_collateral(
    collateral: IntelCollateral, *, pck: Pck, root: x509.Certificate, now: datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check revocation, then the signed TCB info and QE identity (chains to the pinned root,
    signatures over the exact bytes, validity windows). Returns (tcbInfo, enclaveIdentity)."""
    check_revocation(pck, pck_crl=collateral.pck_crl, root_crl=collateral.root_ca_crl, root=root, now=now)
    root_crl = collateral.root_ca_crl
    tcb_info = _signed_json(
        collateral.tcb_info, collateral.tcb_info_signature, collateral.tcb_info_chain,
        root=root, root_crl=root_crl, now=now,
    )
    qe_identity = _signed_json(
        collateral.qe_identity, collateral.qe_identity_signature, collateral.qe_identity_chain,
        root=root, root_crl=root_crl, now=now,
    )
    return tcb_info, qe_identity
