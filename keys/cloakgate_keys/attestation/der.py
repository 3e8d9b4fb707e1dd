"""A small, strict DER reader: TLV walking, OIDs, integers, times.

Enough for the pieces `cryptography` does not expose or refuses to parse (Intel PCK SGX
extension, AMD VCEK extensions, serial-0 AMD certificates, Gramine RA-TLS certificates).
Definite lengths only; every length is checked against the input.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

SEQUENCE = 0x30
SET = 0x31
BOOLEAN = 0x01
INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
NULL = 0x05
OID = 0x06
ENUMERATED = 0x0A
UTF8_STRING = 0x0C
PRINTABLE_STRING = 0x13
IA5_STRING = 0x16
UTC_TIME = 0x17
GENERALIZED_TIME = 0x18


class DerError(ValueError):
    """The bytes are not the DER structure the caller expected."""


@dataclass(frozen=True)
class Tlv:
    tag: int
    content: bytes
    raw: bytes  # header and content, exactly as in the input


def read_tlv(data: bytes, pos: int = 0) -> tuple[Tlv, int]:
    """Read one TLV at `pos`; return it and the offset just past it."""
    if pos + 2 > len(data):
        raise DerError("truncated header")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise DerError("multi-byte tags are not supported")
    length = data[pos + 1]
    header = 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4:
            raise DerError("indefinite or oversized length")
        if pos + 2 + count > len(data):
            raise DerError("truncated length")
        length = int.from_bytes(data[pos + 2 : pos + 2 + count], "big")
        header += count
    end = pos + header + length
    if end > len(data):
        raise DerError("length beyond input")
    return Tlv(tag, bytes(data[pos + header : end]), bytes(data[pos:end])), end


def read_one(data: bytes, tag: int | None = None) -> Tlv:
    """Exactly one TLV filling `data`, optionally of a given tag."""
    tlv, end = read_tlv(data)
    if end != len(data):
        raise DerError("trailing bytes")
    if tag is not None and tlv.tag != tag:
        raise DerError("unexpected tag")
    return tlv


def children(data: bytes) -> list[Tlv]:
    """The consecutive TLVs that exactly fill `data` (the content of a SEQUENCE or SET)."""
    out: list[Tlv] = []
    pos = 0
    while pos < len(data):
        tlv, pos = read_tlv(data, pos)
        out.append(tlv)
    return out


def decode_oid(content: bytes) -> str:
    if not content or content[-1] & 0x80:
        raise DerError("bad OID")
    arcs: list[int] = []
    value = 0
    for byte in content:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    return ".".join(str(a) for a in head + arcs[1:])


def decode_int(tlv: Tlv) -> int:
    if tlv.tag not in (INTEGER, ENUMERATED) or not tlv.content:
        raise DerError("not an integer")
    return int.from_bytes(tlv.content, "big", signed=True)


def decode_time(tlv: Tlv) -> datetime:
    try:
        text = tlv.content.decode("ascii")
        if tlv.tag == UTC_TIME:  # RFC 5280: YY >= 50 means 19YY
            parsed = datetime.strptime(text, "%y%m%d%H%M%SZ")
            if parsed.year >= 2050:
                parsed = parsed.replace(year=parsed.year - 100)
        elif tlv.tag == GENERALIZED_TIME:
            parsed = datetime.strptime(text, "%Y%m%d%H%M%SZ")
        else:
            raise DerError("not a time")
    except (UnicodeDecodeError, ValueError) as exc:
        raise DerError("bad time") from exc
    return parsed.replace(tzinfo=UTC)


def decode_string(tlv: Tlv) -> str:
    if tlv.tag not in (UTF8_STRING, PRINTABLE_STRING, IA5_STRING):
        raise DerError("not a string")
    try:
        return tlv.content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DerError("bad string") from exc
