"""A byte-exact multipart parser (RFC 2046, RFC 7578) for multipart/form-data and multipart/mixed.

``parse`` reports the span of every part's header block and body, so the caller splices new bytes
into the original body (``codecs.splice``): boundary, preamble, epilogue, part headers, filenames
and every other byte stay as the client sent them. Nothing is re-serialized.

Framing, chosen so that we never split a body differently from the server behind us (a part we do
not see is a part we do not protect):

- Lines end in CRLF. A delimiter is ``CRLF--boundary`` (or ``--boundary`` at the very start); as
  RFC 2046 5.1.1 tells implementors, the boundary only has to appear in its entirety at the start
  of a line, so ``--boundaryX`` is a delimiter followed by garbage and is refused.
- ``--boundary`` may occur nowhere else: not after a bare LF, not in the middle of a line, not in the
  preamble or the epilogue. Lenient servers accept bare-LF delimiters and naive ones split on
  ``--boundary`` wherever it is (mitmproxy's own ``decode_multipart`` does), so such a body could
  hold parts we do not see. Bare LF line breaks are therefore refused, not guessed at. A client
  picks its boundary so that it occurs nowhere in the content, so real bodies are not affected.
- Each part is first cut at the next delimiter; its header block and body are then looked for
  inside that span only, so a part without the blank line can never swallow the next delimiter.
  A part must have the blank line (``--b CRLF CRLF --b`` is refused, as are folded header lines,
  control characters in header lines and repeated Content-Disposition/Content-Type/
  Content-Transfer-Encoding headers).
- Content-Disposition ``name`` is a token or quoted-string. Inside a quoted-string ``\\"`` and
  ``\\\\`` are escapes; a backslash before anything else is kept literally (what browsers mean,
  they do not escape backslashes), except in ``name`` where servers disagree and the part is refused.
  ``name*=`` (RFC 2231/5987 ``charset'lang'%XX``) is decoded strictly; if both ``name`` and
  ``name*`` are given they must agree. RFC 2231 continuations (``name*0=``) and repeated parameters
  are refused. ``filename*`` wins over ``filename`` (RFC 6266). Percent escapes in a plain
  ``name="…"`` (WHATWG's ``%22`` for a quote) are left as they are.
- Header values that we interpret are decoded as strict UTF-8 (what browsers send).

Everything is linear in the size of the body; the number of parts is bounded by ``max_parts``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import BodyError

__all__ = ["Part", "boundary_from_content_type", "check_replacement", "parse"]

MALFORMED = "cloakgate.body.malformed_multipart"
TOO_MANY_PARTS = "cloakgate.body.too_many_parts"

# RFC 2046 bchars: 1-70 characters, a space is allowed but not at the end.
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CTL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # control characters except HTAB
_QUOTED = re.compile(r'"([^"\\]*(?:\\.[^"\\]*)*)"', re.DOTALL)
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
_ODD_PAIR = re.compile(r'[^\\]*(?:\\["\\][^\\]*)*\\[^"\\]', re.DOTALL)  # a pair other than \" or \\
_CONTINUATION = re.compile(r".+\*[0-9]+\*?")
_PADDING = re.compile(rb"[ \t]*\r\n")
_PCT = re.compile(r"%([0-9A-Fa-f]{2})")
_BAD_PCT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_OWS = " \t"
# Headers whose values we interpret: each may appear at most once in a part.
_INTERPRETED = frozenset({"content-disposition", "content-type", "content-transfer-encoding"})


@dataclass(frozen=True, slots=True)
class Part:
    """One part: what it says about itself, and where its header block and body are in the body."""

    index: int
    name: str | None  # Content-Disposition name= (or name*=)
    filename: str | None  # Content-Disposition filename*= or filename=
    content_type: str | None  # lower-cased media type without parameters; None without Content-Type
    charset: str | None  # lower-cased charset parameter of the part's Content-Type
    transfer_encoding: str | None  # lower-cased Content-Transfer-Encoding; None if absent
    headers_start: int  # header block, without the CRLF that ends its last line
    headers_end: int
    body_start: int  # body, without the CRLF before the next delimiter
    body_end: int


def _malformed(message: str) -> BodyError:
    return BodyError(message, code=MALFORMED)


def _check_boundary(boundary: str) -> bytes:
    if not _BOUNDARY.fullmatch(boundary):
        raise _malformed("multipart boundary missing or invalid")
    return boundary.encode("ascii")


def _params(value: str) -> tuple[str, dict[str, str], frozenset[str]]:
    """Split ``type; k=v; k="q"`` into the type, the parameters (keys lower-cased) and the keys
    whose quoted-string held a backslash before a character other than a quote or backslash."""
    head, semi, rest = value.partition(";")
    params: dict[str, str] = {}
    odd: set[str] = set()
    i, n = 0, len(rest)
    while semi and i < n:
        while i < n and rest[i] in _OWS:
            i += 1
        if i == n:
            break  # a trailing ';'
        if rest[i] == ";":
            i += 1
            continue
        m = _TOKEN.match(rest, i)
        if not m:
            raise _malformed("bad header parameter")
        key, i = m.group().lower(), m.end()
        while i < n and rest[i] in _OWS:
            i += 1
        if i == n or rest[i] != "=":
            raise _malformed("bad header parameter")
        i += 1
        while i < n and rest[i] in _OWS:
            i += 1
        if i < n and rest[i] == '"':
            q = _QUOTED.match(rest, i)
            if not q:
                raise _malformed("unterminated quoted string")
            i = q.end()
            inner = q.group(1)
            if _ODD_PAIR.match(inner):
                odd.add(key)
                val = _QUOTED_PAIR.sub(lambda p: p.group(1) if p.group(1) in '"\\' else p.group(0), inner)
            else:
                val = _QUOTED_PAIR.sub(r"\1", inner)
        else:
            j = rest.find(";", i)
            j = n if j < 0 else j
            val, i = rest[i:j].rstrip(_OWS), j
            if not val or any(c in val for c in ' \t"'):
                raise _malformed("bad header parameter")
        while i < n and rest[i] in _OWS:
            i += 1
        if i < n and rest[i] != ";":
            raise _malformed("bad header parameter")
        i += 1
        if key in params:
            raise _malformed("repeated header parameter")
        if _CONTINUATION.fullmatch(key):
            raise _malformed("parameter continuations are not accepted")
        params[key] = val
    return head.strip(_OWS), params, frozenset(odd)


def _ext_value(value: str) -> str:
    """Decode an RFC 2231/5987 extended value ``charset'lang'percent-encoded`` strictly."""
    charset, q1, rest = value.partition("'")
    _lang, q2, encoded = rest.partition("'")
    if not q1 or not q2 or not charset or not encoded.isascii() or _BAD_PCT.search(encoded):
        raise _malformed("bad extended parameter")
    raw = _PCT.sub(lambda m: chr(int(m.group(1), 16)), encoded).encode("latin-1")
    try:
        return raw.decode(charset)
    except (LookupError, ValueError):
        raise _malformed("bad extended parameter") from None


def _disposition(value: str) -> tuple[str | None, str | None]:
    _type, params, odd = _params(value)
    name = params.get("name")
    if "name" in odd:
        raise _malformed("ambiguous escape in the part name")
    if "name*" in params:
        ext = _ext_value(params["name*"])
        if name is not None and name != ext:
            raise _malformed("the part has two different names")
        name = ext
    filename = params.get("filename")
    if "filename*" in params:
        filename = _ext_value(params["filename*"])
    return name, filename


def _headers(block: bytes) -> dict[str, str]:
    """The interpreted headers of a part's header block (lower-cased names, stripped values)."""
    out: dict[str, str] = {}
    if not block:
        return out
    for line in block.split(b"\r\n"):
        if not line or line[:1] in (b" ", b"\t"):
            raise _malformed("bad or folded part header line")
        name, colon, value = line.partition(b":")
        if not colon or not _HEADER_NAME.fullmatch(name) or _CTL.search(value):
            raise _malformed("bad part header line")
        key = name.decode("ascii").lower()
        if key not in _INTERPRETED:
            continue
        if key in out:
            raise _malformed("repeated part header")
        try:
            out[key] = value.decode("utf-8").strip(_OWS)
        except UnicodeDecodeError:
            raise _malformed("part header is not UTF-8") from None
    return out


def boundary_from_content_type(content_type: str) -> str:
    """The boundary parameter of a ``multipart/*`` Content-Type (RFC 2046: 1-70 allowed characters)."""
    media_type, params, _odd = _params(content_type)
    if not media_type.lower().startswith("multipart/"):
        raise _malformed("not a multipart content type")
    boundary = params.get("boundary")
    if boundary is None:
        raise _malformed("multipart boundary missing or invalid")
    _check_boundary(boundary)
    return boundary


def parse(body: bytes, boundary: str, *, max_parts: int = 1000) -> list[Part]:
    """The parts of a multipart body, with their spans. Raises ``BodyError`` (see the module doc)."""
    delim = b"--" + _check_boundary(boundary)
    sep = b"\r\n" + delim
    if body.startswith(delim):
        pos = 0
    else:
        i = body.find(sep)
        if i < 0:
            raise _malformed("multipart body has no delimiter")
        pos = i + 2  # the preamble (and its last CRLF) is left alone
    parts: list[Part] = []
    while True:
        after = pos + len(delim)
        if body.startswith(b"--", after):  # the close delimiter; what follows is the epilogue
            if body.count(delim) != len(parts) + 1:
                raise _malformed("multipart boundary outside its delimiters")
            return parts
        line_end = _PADDING.match(body, after)
        if not line_end:
            raise _malformed("bad multipart delimiter line")
        hstart = line_end.end()
        nxt = body.find(sep, hstart - 2)  # from hstart - 2: "--b CRLF --b" is an empty part
        if nxt < 0:
            raise _malformed("multipart body has no close delimiter")
        if len(parts) >= max_parts:
            raise BodyError("too many multipart parts", code=TOO_MANY_PARTS)
        if nxt <= hstart:
            raise _malformed("part without header/body separator")
        if body.startswith(b"\r\n", hstart):
            hend, bstart = hstart, hstart + 2  # no headers
        else:
            hend = body.find(b"\r\n\r\n", hstart, nxt)
            if hend < 0:
                raise _malformed("part without header/body separator")
            bstart = hend + 4
        headers = _headers(body[hstart:hend])
        name = filename = content_type = charset = None
        if "content-disposition" in headers:
            name, filename = _disposition(headers["content-disposition"])
        if "content-type" in headers:
            media_type, params, _odd = _params(headers["content-type"])
            if not media_type:
                raise _malformed("empty part content type")
            content_type = media_type.lower()
            charset = params["charset"].lower() if params.get("charset") else None
        parts.append(Part(
            index=len(parts),
            name=name,
            filename=filename,
            content_type=content_type,
            charset=charset,
            transfer_encoding=headers.get("content-transfer-encoding", "").lower() or None,
            headers_start=hstart,
            headers_end=hend,
            body_start=bstart,
            body_end=nxt,
        ))
        pos = nxt + 2


def check_replacement(boundary: str, new_body: bytes) -> None:
    """Refuse new part-body bytes that would change the framing once spliced in, or that ``parse``
    would refuse: bytes that contain ``--boundary`` anywhere. That covers a delimiter
    (``CRLF--boundary``), bytes that start with ``--boundary`` (a part body follows a CRLF) and
    the bare-LF and mid-line forms that naive parsers split on."""
    delim = b"--" + _check_boundary(boundary)
    if delim in new_body:
        raise _malformed("replacement would break the multipart framing")
