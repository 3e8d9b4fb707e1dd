"""Content-Encoding, decoded with a bound on the output (no decompression bombs)."""

from __future__ import annotations

import gzip
import zlib

from ..errors import BodyError

SUPPORTED = ("identity", "gzip", "x-gzip", "deflate", "br", "zstd")
_CHUNK = 64 * 1024


def parse_content_encoding(header: str | None) -> tuple[str, ...]:
    if not header:
        return ()
    out = []
    for tok in header.split(","):
        t = tok.strip().lower()
        if not t or t == "identity":
            continue
        if t not in SUPPORTED:
            raise BodyError("unsupported content encoding", code="cloakgate.body.unknown_encoding", status_hint=415)
        out.append(t)
    return tuple(out)


def _too_large() -> BodyError:
    return BodyError("decompressed body exceeds the limit", code="cloakgate.body.too_large", status_hint=413)


def _malformed() -> BodyError:
    return BodyError("compressed body is corrupt", code="cloakgate.body.malformed_encoding")


def _zlib(data: bytes, wbits: int, max_size: int) -> bytes:
    d = zlib.decompressobj(wbits)
    out = bytearray()
    buf = data
    try:
        while True:
            out += d.decompress(buf, max_size + 1 - len(out))
            if len(out) > max_size:
                raise _too_large()
            buf = d.unconsumed_tail
            if d.eof:
                if d.unused_data and wbits == 31:  # concatenated gzip members
                    rest = d.unused_data
                    d = zlib.decompressobj(wbits)
                    buf = rest
                    continue
                if d.unused_data:
                    raise _malformed()
                return bytes(out)
            if not buf:
                raise _malformed()  # truncated stream
    except zlib.error:
        raise _malformed() from None


def _brotli(data: bytes, max_size: int) -> bytes:
    import brotli

    d = brotli.Decompressor()
    out = bytearray()
    try:
        for i in range(0, len(data) or 1, _CHUNK):
            out += d.process(data[i : i + _CHUNK])
            if len(out) > max_size:
                raise _too_large()
        if not d.is_finished():
            raise _malformed()
    except brotli.error:
        raise _malformed() from None
    return bytes(out)


def _zstd(data: bytes, max_size: int) -> bytes:
    try:
        from compression import zstd  # Python 3.14+
    except ImportError:
        from backports import zstd  # what mitmproxy 12 uses before 3.14

    d = zstd.ZstdDecompressor()
    out = bytearray()
    buf = data
    try:
        while True:
            out += d.decompress(buf, max_length=max_size + 1 - len(out))
            buf = b""
            if len(out) > max_size:
                raise _too_large()
            if d.eof:
                if not d.unused_data:
                    return bytes(out)
                buf = d.unused_data  # frames may be concatenated
                d = zstd.ZstdDecompressor()
            elif d.needs_input:
                raise _malformed()  # truncated
    except zstd.ZstdError:
        raise _malformed() from None


def decode(data: bytes, encodings: tuple[str, ...], *, max_size: int) -> bytes:
    for enc in reversed(encodings):
        if enc in ("gzip", "x-gzip"):
            data = _zlib(data, 31, max_size)
        elif enc == "deflate":
            try:
                data = _zlib(data, 15, max_size)
            except BodyError as e:
                if e.code != "cloakgate.body.malformed_encoding":
                    raise
                data = _zlib(data, -15, max_size)
        elif enc == "br":
            data = _brotli(data, max_size)
        elif enc == "zstd":
            data = _zstd(data, max_size)
    return data


def encode(data: bytes, encodings: tuple[str, ...]) -> bytes:
    for enc in encodings:
        if enc in ("gzip", "x-gzip"):
            data = gzip.compress(data, compresslevel=1, mtime=0)
        elif enc == "deflate":
            data = zlib.compress(data, 1)
        elif enc == "br":
            import brotli

            data = brotli.compress(data, quality=1)
        elif enc == "zstd":
            try:
                from compression import zstd
            except ImportError:
                from backports import zstd

            data = zstd.compress(data, level=1)
    return data
