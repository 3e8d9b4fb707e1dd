"""The CBOR subset RA-TLS evidence uses (RFC 8949): unsigned/negative integers, byte and text
strings, arrays, maps, tags, false/true/null. Definite lengths only; duplicate map keys,
trailing bytes and nesting deeper than `MAX_DEPTH` are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_DEPTH = 16


class CborError(ValueError):
    """Not the CBOR subset this decoder accepts."""


@dataclass(frozen=True)
class Tag:
    number: int
    value: Any


def loads(data: bytes) -> Any:
    value, end = _item(data, 0, 0)
    if end != len(data):
        raise CborError("trailing bytes")
    return value


def _argument(data: bytes, pos: int) -> tuple[int, int, int]:
    if pos >= len(data):
        raise CborError("truncated")
    major, info = data[pos] >> 5, data[pos] & 0x1F
    pos += 1
    if info < 24:
        return major, info, pos
    if info > 27:
        raise CborError("indefinite length or reserved value")
    size = 1 << (info - 24)
    if pos + size > len(data):
        raise CborError("truncated")
    return major, int.from_bytes(data[pos : pos + size], "big"), pos + size


def _item(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    if depth > MAX_DEPTH:
        raise CborError("too deep")
    major, arg, pos = _argument(data, pos)
    if major == 0:
        return arg, pos
    if major == 1:
        return -1 - arg, pos
    if major in (2, 3):
        end = pos + arg
        if end > len(data):
            raise CborError("truncated")
        chunk = bytes(data[pos:end])
        if major == 2:
            return chunk, end
        try:
            return chunk.decode("utf-8"), end
        except UnicodeDecodeError as exc:
            raise CborError("bad text") from exc
    if major == 4:
        if arg > len(data) - pos:
            raise CborError("truncated")
        items = []
        for _ in range(arg):
            item, pos = _item(data, pos, depth + 1)
            items.append(item)
        return items, pos
    if major == 5:
        if arg > len(data) - pos:
            raise CborError("truncated")
        mapping: dict[Any, Any] = {}
        for _ in range(arg):
            key, pos = _item(data, pos, depth + 1)
            if not isinstance(key, (str, int, bytes)) or key in mapping:
                raise CborError("bad or duplicate map key")
            mapping[key], pos = _item(data, pos, depth + 1)
        return mapping, pos
    if major == 6:
        value, pos = _item(data, pos, depth + 1)
        return Tag(arg, value), pos
    simple = {20: False, 21: True, 22: None}
    if arg in simple and data[pos - 1] & 0x1F == arg:
        return simple[arg], pos
    raise CborError("unsupported simple value or float")
