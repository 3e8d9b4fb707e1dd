"""The CBOR subset RA-TLS needs (RFC 8949): unsigned/negative ints, byte and text strings, arrays,
maps and tags, definite lengths only. Decoding is strict and bounded: no indefinite lengths, no
duplicate map keys, no trailing bytes, no non-minimal heads, depth and item limits."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

MAX_DEPTH = 16
MAX_ITEMS = 4096


class CBORError(ValueError):
    pass


@dataclass(frozen=True)
class Tag:
    tag: int
    value: Any


def _head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes([major << 5 | n])
    for info, fmt, limit in ((24, ">B", 1 << 8), (25, ">H", 1 << 16), (26, ">I", 1 << 32),
                             (27, ">Q", 1 << 64)):
        if n < limit:
            return bytes([major << 5 | info]) + struct.pack(fmt, n)
    raise CBORError("integer too large")


def encode(obj: Any) -> bytes:
    if isinstance(obj, bool) or obj is None:
        raise CBORError("unsupported type")
    if isinstance(obj, int):
        return _head(0, obj) if obj >= 0 else _head(1, -1 - obj)
    if isinstance(obj, bytes):
        return _head(2, len(obj)) + obj
    if isinstance(obj, str):
        b = obj.encode()
        return _head(3, len(b)) + b
    if isinstance(obj, list | tuple):
        return _head(4, len(obj)) + b"".join(encode(x) for x in obj)
    if isinstance(obj, dict):
        return _head(5, len(obj)) + b"".join(encode(k) + encode(v) for k, v in obj.items())
    if isinstance(obj, Tag):
        return _head(6, obj.tag) + encode(obj.value)
    raise CBORError("unsupported type")


class _Decoder:
    def __init__(self, data: bytes):
        self.data, self.pos, self.items = data, 0, 0

    def take(self, n: int) -> bytes:
        if n > len(self.data) - self.pos:
            raise CBORError("truncated")
        out = self.data[self.pos: self.pos + n]
        self.pos += n
        return out

    def head(self) -> tuple[int, int]:
        b = self.take(1)[0]
        major, info = b >> 5, b & 31
        if info < 24:
            return major, info
        sizes = {24: 1, 25: 2, 26: 4, 27: 8}
        if info not in sizes:
            raise CBORError("indefinite or reserved length")
        n = int.from_bytes(self.take(sizes[info]), "big")
        if (info == 24 and n < 24) or (info > 24 and n < 1 << (8 * sizes[info] // 2)):
            raise CBORError("non-minimal length")
        return major, n

    def item(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise CBORError("too deep")
        self.items += 1
        if self.items > MAX_ITEMS:
            raise CBORError("too many items")
        major, n = self.head()
        if major == 0:
            return n
        if major == 1:
            return -1 - n
        if major == 2:
            return self.take(n)
        if major == 3:
            try:
                return self.take(n).decode()
            except UnicodeDecodeError as e:
                raise CBORError("invalid text") from e
        if major == 4:
            if n > MAX_ITEMS:
                raise CBORError("too many items")
            return [self.item(depth + 1) for _ in range(n)]
        if major == 5:
            if n > MAX_ITEMS:
                raise CBORError("too many items")
            out: dict[Any, Any] = {}
            for _ in range(n):
                k = self.item(depth + 1)
                if not isinstance(k, int | str | bytes) or k in out:
                    raise CBORError("bad or duplicate map key")
                out[k] = self.item(depth + 1)
            return out
        if major == 6:
            return Tag(n, self.item(depth + 1))
        raise CBORError("unsupported major type")


def decode(data: bytes) -> Any:
    d = _Decoder(data)
    out = d.item(0)
    if d.pos != len(data):
        raise CBORError("trailing bytes")
    return out
