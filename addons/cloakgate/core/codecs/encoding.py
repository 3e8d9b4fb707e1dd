"""Content-Encoding, decoded with a bound on the output (no decompression bombs).

mitmproxy's own decoders inflate without a limit and do not handle stacked codings (MITMPROXY.md
pitfalls 6-7), so request bodies are decoded here:

- ``parse_content_encoding("gzip, br")`` is ``("gzip", "br")``: the order in which the sender applied
  them. ``identity`` and empty tokens are dropped; anything else unknown, or more than
  ``MAX_CODINGS`` codings, is ``cloakgate.body.unknown_encoding`` (status hint 415).
- ``decode`` undoes them in reverse order. Every stage keeps at most ``max_size + 1`` bytes of
  output (one more byte tells "exactly max_size" from "more") and asks its decompressor for output
  in steps of at most 64 KiB: zlib and zstd with ``max_length``, brotli with ``output_buffer_limit``
  (it returns blocks of about 100 KiB, checked before they are kept). Input is fed in chunks, so
  leftover-input copies stay small even for thousands of concatenated gzip members or zstd frames.
  Over the bound: ``cloakgate.body.too_large`` (413). A corrupt or truncated stream, or bytes after its end:
  ``cloakgate.body.malformed_encoding`` (400).
- gzip/x-gzip: one or more concatenated gzip members (RFC 1952), nothing else after them.
  deflate: zlib-wrapped (RFC 1950, the standard) or raw deflate (what some servers send), like
  mitmproxy. zstd: one or more frames (skippable frames allowed) with a window of at most 8 MiB, as
  RFC 9659 allows decoders to demand (a larger window would let a small body claim a large buffer).
  At most ``MAX_FRAMES`` gzip members or zstd frames (each costs a new decompressor, so a body of
  tiny frames would otherwise cost far more time than its size suggests); more are malformed.
- An empty body decodes to an empty body whatever its codings (there is nothing to undo).
- ``encode`` applies codings in order at fast levels: gzip level 1 with mtime 0, deflate as zlib
  level 1, brotli quality 1, zstd level 1.
"""

from __future__ import annotations

import gzip
import zlib

import brotli

try:  # what mitmproxy 12.3 uses: the standard module from Python 3.14, the backport before
    from compression import zstd  # type: ignore[import-not-found]
except ImportError:
    from backports import zstd  # type: ignore[no-redef]

from ..errors import BodyError

__all__ = ["MAX_CODINGS", "MAX_FRAMES", "SUPPORTED", "decode", "encode", "parse_content_encoding"]

SUPPORTED = ("identity", "gzip", "x-gzip", "deflate", "br", "zstd")
MAX_CODINGS = 4
MAX_FRAMES = 4096  # gzip members or zstd frames (skippable ones included) in one body
ZSTD_WINDOW_LOG_MAX = 23  # 8 MiB, RFC 9659 section 3

_IN_CHUNK = 16 * 1024  # compressed input fed per call
_OUT_CHUNK = 64 * 1024  # zlib/zstd output asked for per call
_BR_OUT = 32 * 1024  # brotli output_buffer_limit per call (it returns up to about 3x this)


def _unknown() -> BodyError:
    return BodyError("unsupported content encoding", code="cloakgate.body.unknown_encoding", status_hint=415)


def _too_large() -> BodyError:
    return BodyError("decompressed body exceeds the limit", code="cloakgate.body.too_large", status_hint=413)


def _malformed() -> BodyError:
    return BodyError("compressed body is corrupt or truncated", code="cloakgate.body.malformed_encoding")


def parse_content_encoding(header: str | None) -> tuple[str, ...]:
    """The codings of a Content-Encoding header value, in the order the sender applied them."""
    if not header:
        return ()
    out = []
    for token in header.split(","):
        t = token.strip(" \t").lower()
        if not t or t == "identity":
            continue
        if t not in SUPPORTED:
            raise _unknown()
        out.append(t)
    if len(out) > MAX_CODINGS:
        raise _unknown()
    return tuple(out)


def _inflate(data: bytes, wbits: int, max_size: int, *, members: bool) -> bytes:
    """zlib/gzip/raw deflate; with ``members`` further gzip members may follow the first."""
    out = bytearray()
    view = memoryview(data)
    d = zlib.decompressobj(wbits)
    pos, buf, pending, count = 0, b"", False, 0
    try:
        while True:
            if not buf and not pending:
                if pos >= len(data):
                    break
                buf = view[pos : pos + _IN_CHUNK]
                pos += len(buf)
            if d.eof:  # input after the end of a member
                count += 1
                if not members or count >= MAX_FRAMES:
                    raise _malformed()
                d = zlib.decompressobj(wbits)
            want = min(_OUT_CHUNK, max_size + 1 - len(out))
            piece = d.decompress(buf, want)
            out += piece
            if len(out) > max_size:
                raise _too_large()
            pending = len(piece) == want and not d.eof  # zlib may hold more output
            buf = d.unused_data if d.eof else d.unconsumed_tail
    except zlib.error:
        raise _malformed() from None
    if not d.eof:
        raise _malformed()  # truncated
    return bytes(out)


def _unbrotli(data: bytes, max_size: int) -> bytes:
    out = bytearray()
    d = brotli.Decompressor()
    pos = 0
    try:
        while True:
            if pos < len(data) and d.can_accept_more_data():
                chunk = data[pos : pos + _IN_CHUNK]
                pos += len(chunk)
            elif d.is_finished():
                break
            else:
                chunk = b""  # drain pending output (brotli may hold some even when it accepts input)
            piece = d.process(chunk, output_buffer_limit=_BR_OUT)
            if len(out) + len(piece) > max_size:
                raise _too_large()
            if not chunk and not piece:
                break  # no progress: truncated, unless finished
            out += piece
    except brotli.error:
        raise _malformed() from None
    if not d.is_finished() or pos < len(data):
        raise _malformed()  # truncated, or bytes after the end of the stream
    return bytes(out)


def _new_zstd() -> zstd.ZstdDecompressor:
    return zstd.ZstdDecompressor(options={zstd.DecompressionParameter.window_log_max: ZSTD_WINDOW_LOG_MAX})


def _unzstd(data: bytes, max_size: int) -> bytes:
    out = bytearray()
    view = memoryview(data)
    d = _new_zstd()
    pos, buf, count = 0, b"", 0
    try:
        while True:
            if not buf and (d.eof or d.needs_input):
                if pos >= len(data):
                    break
                buf = view[pos : pos + _IN_CHUNK]
                pos += len(buf)
            if d.eof:  # another frame follows
                count += 1
                if count >= MAX_FRAMES:
                    raise _malformed()
                d = _new_zstd()
            piece = d.decompress(buf, min(_OUT_CHUNK, max_size + 1 - len(out)))
            if not buf and not piece and not d.eof:
                raise _malformed()  # no progress
            out += piece
            if len(out) > max_size:
                raise _too_large()
            buf = d.unused_data if d.eof else b""
    except zstd.ZstdError:
        raise _malformed() from None
    if not d.eof:
        raise _malformed()  # truncated
    return bytes(out)


def decode(data: bytes, encodings: tuple[str, ...], *, max_size: int) -> bytes:
    """Undo ``encodings`` (in the order the sender applied them); each stage yields at most
    ``max_size`` bytes. Raises ``BodyError`` (see the module doc)."""
    if max_size < 0:
        raise ValueError("max_size must not be negative")
    if any(enc not in SUPPORTED for enc in encodings) or sum(e != "identity" for e in encodings) > MAX_CODINGS:
        raise _unknown()
    if not data:
        return data
    for enc in reversed(encodings):
        if enc in ("gzip", "x-gzip"):
            data = _inflate(data, 31, max_size, members=True)
        elif enc == "deflate":
            try:
                data = _inflate(data, 15, max_size, members=False)
            except BodyError as e:
                if e.code != "cloakgate.body.malformed_encoding":
                    raise
                data = _inflate(data, -15, max_size, members=False)
        elif enc == "br":
            data = _unbrotli(data, max_size)
        elif enc == "zstd":
            data = _unzstd(data, max_size)
    return data


def encode(data: bytes, encodings: tuple[str, ...]) -> bytes:
    """Apply ``encodings`` in order, at fast levels."""
    if any(enc not in SUPPORTED for enc in encodings):
        raise _unknown()
    for enc in encodings:
        if enc in ("gzip", "x-gzip"):
            data = gzip.compress(data, compresslevel=1, mtime=0)
        elif enc == "deflate":
            data = zlib.compress(data, 1)
        elif enc == "br":
            data = brotli.compress(data, quality=1)
        elif enc == "zstd":
            data = zstd.compress(data, level=1)
    return data
