"""application/x-www-form-urlencoded bodies and URL query strings, with the byte span of every value.

- Fields are separated by ``&`` only. ``;`` is data, not a separator (as in the WHATWG URL standard
  and browsers; the old HTML 4 ``;`` convention is not followed). Empty fields (``a&&b``) are skipped.
- A field is ``name=value`` (split at the first ``=``) or just ``name`` (``has_equals`` False).
- Names and values are percent-decoded (``+`` is a space) and the bytes decoded strictly with the
  charset. Raw non-ASCII bytes are decoded strictly with the charset too.
- A ``%`` that does not start two hex digits is refused (``cloakgate.body.malformed_form``); bytes
  that are not valid in the charset and unknown charsets give ``cloakgate.body.bad_charset``. Only
  ASCII-compatible charsets are accepted (UTF-16/32 or UTF-7 would make ``&``, ``=`` and ``%``
  ambiguous), others are ``cloakgate.body.bad_charset`` too.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import BodyError

__all__ = ["FormField", "encode_value", "parse"]

MALFORMED = "cloakgate.body.malformed_form"
BAD_CHARSET = "cloakgate.body.bad_charset"
TOO_MANY_FIELDS = "cloakgate.body.too_many_fields"

_HEXDIGITS = b"0123456789abcdefABCDEF"
_HEX = {bytes([a, b]): bytes.fromhex(chr(a) + chr(b)) for a in _HEXDIGITS for b in _HEXDIGITS}  # "%aF" too
_ASCII = bytes(range(128))
# What browsers leave unescaped in application/x-www-form-urlencoded; space becomes '+'.
_KEEP = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._*")
_ENCODED = tuple(bytes([b]) if b in _KEEP else b"+" if b == 0x20 else b"%%%02X" % b for b in range(256))


@dataclass(frozen=True, slots=True)
class FormField:
    """One field; ``value_start:value_end`` is the raw (still encoded) value in the input. For a
    field without ``=`` both are the end of the name, so an edit there must insert ``=`` too."""

    index: int
    name: str
    value: str
    value_start: int
    value_end: int
    has_equals: bool


def _bad_charset(message: str) -> BodyError:
    return BodyError(message, code=BAD_CHARSET)


def _check_charset(charset: str) -> str:
    """Refuse unknown, non-text and non-ASCII-compatible charsets."""
    try:
        ok = _ASCII.decode(charset) == _ASCII.decode("ascii") and "&=+%".encode(charset) == b"&=+%"
    except (LookupError, ValueError, TypeError):
        ok = False
    if not ok:
        raise _bad_charset("unknown or unsupported charset")
    return charset


def _unquote(raw: bytes, charset: str) -> str:
    chunks = raw.replace(b"+", b" ").split(b"%")
    if len(chunks) > 1:
        out = [chunks[0]]
        try:
            for chunk in chunks[1:]:
                out.append(_HEX[chunk[:2]])
                out.append(chunk[2:])
        except KeyError:
            raise BodyError("bad percent escape in form data", code=MALFORMED) from None
        raw = b"".join(out)
    else:
        raw = chunks[0]
    try:
        return raw.decode(charset)
    except UnicodeDecodeError:
        raise _bad_charset("form data is not valid in its charset") from None


def parse(data: bytes, charset: str = "utf-8", *, max_fields: int = 10000) -> list[FormField]:
    """The fields of ``data`` in order, duplicates kept. Raises ``BodyError`` (see the module doc)."""
    _check_charset(charset)
    fields: list[FormField] = []
    pos, n = 0, len(data)
    while pos < n:
        end = data.find(b"&", pos)
        if end < 0:
            end = n
        if end > pos:
            if len(fields) >= max_fields:
                raise BodyError("too many form fields", code=TOO_MANY_FIELDS)
            eq = data.find(b"=", pos, end)
            if eq < 0:
                name, value, vstart = _unquote(data[pos:end], charset), "", end
            else:
                name, vstart = _unquote(data[pos:eq], charset), eq + 1
                value = _unquote(data[vstart:end], charset)
            fields.append(FormField(len(fields), name, value, vstart, end, eq >= 0))
        pos = end + 1
    return fields


def encode_value(value: str, charset: str = "utf-8") -> bytes:
    """Encode like browsers do: space as ``+``, ``A-Za-z0-9-._*`` kept, every other byte of the
    charset encoding as ``%XX`` (upper-case hex). A character the charset cannot encode is refused
    (``cloakgate.body.bad_charset``) rather than turned into an HTML character reference."""
    _check_charset(charset)
    try:
        raw = value.encode(charset)
    except UnicodeEncodeError:
        raise _bad_charset("value cannot be encoded in the charset") from None
    return b"".join(_ENCODED[b] for b in raw)
