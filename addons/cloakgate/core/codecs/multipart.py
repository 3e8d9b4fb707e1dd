"""A byte-exact multipart parser (RFC 2046 / RFC 7578).

It reports the span of every part's headers and body, so the caller splices new bytes into the
original body: boundary, preamble, epilogue, part headers, filenames and all other bytes stay as the
client sent them. Lines end in CRLF; a body that uses bare LF delimiters is refused rather than
guessed at (the SaaS could split it differently from us).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from ..errors import BodyError

_BOUNDARY_CHARS = re.compile(r"^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$")
_PARAM = re.compile(r';\s*([A-Za-z0-9_.*\-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


@dataclass(frozen=True, slots=True)
class Part:
    index: int
    name: str | None
    filename: str | None
    content_type: str | None
    charset: str | None
    transfer_encoding: str | None
    headers_start: int
    headers_end: int
    body_start: int
    body_end: int


def _malformed(msg: str) -> BodyError:
    return BodyError(msg, code="cloakgate.body.malformed_multipart")


def _params(value: str) -> dict[str, str]:
    """Parameters of a header value; an RFC 2231/5987 ``name*=`` form wins over ``name=``."""
    plain: dict[str, str] = {}
    extended: dict[str, str] = {}
    for m in _PARAM.finditer(";" + value.split(";", 1)[1] if ";" in value else ""):
        k, v = m.group(1).lower(), m.group(2).strip()
        if v.startswith('"'):
            v = re.sub(r"\\(.)", r"\1", v[1:-1])
        if k.endswith("*"):  # charset'lang'percent-encoded
            cs, _, rest = v.partition("'")
            _, _, enc = rest.partition("'")
            try:
                extended[k[:-1]] = unquote(enc, encoding=cs or "utf-8", errors="strict")
            except (LookupError, UnicodeDecodeError):
                raise _malformed("bad extended parameter") from None
        else:
            plain.setdefault(k, v)
    return {**plain, **extended}


def boundary_from_content_type(content_type: str) -> str:
    if not content_type.lower().lstrip().startswith("multipart/"):
        raise _malformed("not a multipart content type")
    b = _params(content_type).get("boundary")
    if not b or not _BOUNDARY_CHARS.match(b):
        raise _malformed("multipart boundary missing or invalid")
    return b


def _headers(block: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    if not block:
        return out
    for line in block.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            raise _malformed("folded part headers are not accepted")
        name, sep, value = line.partition(b":")
        if not sep or not name or not re.fullmatch(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", name):
            raise _malformed("bad part header line")
        key = name.decode("ascii").lower()
        if key in out:
            raise _malformed("repeated part header")
        try:
            out[key] = value.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise _malformed("part header is not UTF-8") from None
    return out


def parse(body: bytes, boundary: str, *, max_parts: int = 1000) -> list[Part]:
    delim = b"--" + boundary.encode("ascii")
    # The first delimiter: at the start, or after a preamble ending in CRLF.
    if body.startswith(delim):
        pos = 0
    else:
        i = body.find(b"\r\n" + delim)
        if i < 0:
            raise _malformed("multipart body has no delimiter")
        pos = i + 2
    parts: list[Part] = []
    sep = b"\r\n" + delim
    while True:
        after = pos + len(delim)
        if body.startswith(b"--", after):
            return parts  # close delimiter; the rest is epilogue
        # transport padding, then CRLF
        eol = body.find(b"\r\n", after)
        if eol < 0 or body[after:eol].strip(b" \t"):
            raise _malformed("bad delimiter line")
        hstart = eol + 2
        if body.startswith(b"\r\n", hstart):
            hend = hstart
            bstart = hstart + 2
        else:
            hend = body.find(b"\r\n\r\n", hstart)
            if hend < 0:
                raise _malformed("part without header/body separator")
            bstart = hend + 4
        bend = body.find(sep, bstart)
        if bend < 0:
            raise _malformed("multipart body has no close delimiter")
        if len(parts) >= max_parts:
            raise BodyError("too many multipart parts", code="cloakgate.body.too_many_parts")
        h = _headers(body[hstart:hend])
        disp = h.get("content-disposition", "")
        dparams = _params(disp) if disp else {}
        ctype = h.get("content-type")
        parts.append(Part(
            index=len(parts),
            name=dparams.get("name"),
            filename=dparams.get("filename"),
            content_type=ctype.split(";", 1)[0].strip().lower() if ctype else None,
            charset=_params(ctype).get("charset", "").lower() or None if ctype else None,
            transfer_encoding=h.get("content-transfer-encoding", "").lower() or None,
            headers_start=hstart,
            headers_end=hend,
            body_start=bstart,
            body_end=bend,
        ))
        pos = bend + 2


def check_replacement(boundary: str, new_body: bytes) -> None:
    delim = b"--" + boundary.encode("ascii")
    if b"\r\n" + delim in new_body or new_body.startswith(delim) or new_body.endswith(b"\r"):
        raise _malformed("replacement would break the multipart framing")
