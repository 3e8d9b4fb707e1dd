"""Body codecs of the pure core: they report byte spans so edits are spliced into the original bytes.

- ``multipart``: byte-exact multipart/form-data and multipart/mixed parser (spans of headers and bodies)
- ``form``: application/x-www-form-urlencoded bodies and URL query strings (spans of raw values)
- ``encoding``: Content-Encoding with a bound on the decompressed size
- ``splice``: put new bytes into the original body, every other byte unchanged
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["media_type", "splice"]


def media_type(content_type: str | None) -> str:
    """The media type of a Content-Type value, lower case, without parameters ('' when absent)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def splice(data: bytes, edits: Sequence[tuple[int, int, bytes]]) -> bytes:
    """Replace the ``(start, end, new)`` spans of ``data``; the edits may come in any order.

    Spans must lie within ``data`` and must not overlap (an empty span is an insertion; two
    insertions at the same offset keep their given order). Raises ``ValueError`` otherwise.
    """
    out: list[bytes] = []
    pos = 0
    for start, end, new in sorted(edits, key=lambda e: (e[0], e[1])):
        if start < pos or end < start or end > len(data):
            raise ValueError("overlapping or out-of-range edits")
        out.append(data[pos:start])
        out.append(new)
        pos = end
    out.append(data[pos:])
    return b"".join(out)
