"""Body codecs of the pure core: they report byte spans so edits are spliced into the original bytes."""

from __future__ import annotations

from collections.abc import Sequence


def splice(data: bytes, edits: Sequence[tuple[int, int, bytes]]) -> bytes:
    """Replace non-overlapping ``(start, end, new)`` spans of ``data`` (any order)."""
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
