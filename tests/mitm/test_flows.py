"""The adapter's header look-ups answer as mitmproxy's own ``Headers.get`` does."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from mitmproxy import http

from cloakgate.mitm.flows import header, headers_get

names = st.sampled_from([b"Host", b"host", b"HOST", b"Content-Length", b"content-type", b"X-A"])
values = st.binary(max_size=12).filter(lambda v: b"\r" not in v and b"\n" not in v)


@given(st.lists(st.tuples(names, values), max_size=6))
def test_header_look_ups_agree_with_mitmproxy(fields):
    h = http.Headers(fields)
    for name in (b"host", b"content-length", b"content-type", b"x-a", b"absent"):
        expected = h.get(name.decode())
        assert header(h, name) == expected
        assert headers_get(h, name, b"absent") == (expected, None)
