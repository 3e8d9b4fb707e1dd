"""application/x-www-form-urlencoded bodies and URL query strings, with byte spans.

Fields are separated by ``&`` only (``;`` is data, as in the WHATWG URL standard). Names and values
are percent-decoded (``+`` is a space) and decoded strictly with the charset.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

from ..errors import BodyError

_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})")
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._*")


@dataclass(frozen=True, slots=True)
class FormField:
    index: int
    name: str
    value: str
    value_start: int
    value_end: int
    has_equals: bool


def _check_charset(charset: str) -> str:
    try:
        return codecs.lookup(charset).name
    except LookupError:
        raise BodyError("unknown charset", code="cloakgate.body.bad_charset") from None


def _unquote(raw: bytes, charset: str) -> str:
    if _BAD_ESCAPE.search(raw):
        raise BodyError("bad percent escape in form data", code="cloakgate.body.malformed_form")
    b = _ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), raw.replace(b"+", b" "))
    try:
        return b.decode(charset)
    except UnicodeDecodeError:
        raise BodyError("form data is not valid in its charset", code="cloakgate.body.bad_charset") from None


def parse(data: bytes, charset: str = "utf-8", *, max_fields: int = 10000) -> list[FormField]:
    charset = _check_charset(charset)
    fields: list[FormField] = []
    pos = 0
    n = len(data)
    while pos <= n:
        end = data.find(b"&", pos)
        if end < 0:
            end = n
        if end > pos:
            if len(fields) >= max_fields:
                raise BodyError("too many form fields", code="cloakgate.body.too_many_fields")
            eq = data.find(b"=", pos, end)
            if eq < 0:
                fields.append(FormField(len(fields), _unquote(data[pos:end], charset), "", end, end, False))
            else:
                fields.append(FormField(len(fields), _unquote(data[pos:eq], charset),
                                        _unquote(data[eq + 1 : end], charset), eq + 1, end, True))
        pos = end + 1
    return fields


def encode_value(value: str, charset: str = "utf-8") -> bytes:
    """Encode like browsers do: space as ``+``, unreserved bytes kept, the rest ``%XX``."""
    out = bytearray()
    for b in value.encode(_check_charset(charset)):
        if b in _SAFE:
            out.append(b)
        elif b == 0x20:
            out.append(0x2B)
        else:
            out += b"%%%02X" % b
    return bytes(out)
