"""The adapter's header helpers answer and write as mitmproxy's own ``Headers`` does."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from mitmproxy import http

from cloakgate.mitm.flows import header, headers_get, set_content_length

names = st.sampled_from([b"Host", b"host", b"HOST", b"Content-Length", b"content-type", b"X-A"])
values = st.binary(max_size=12).filter(lambda v: b"\r" not in v and b"\n" not in v)


@given(st.lists(st.tuples(names, values), max_size=6))
def test_header_look_ups_agree_with_mitmproxy(fields):
    h = http.Headers(fields)
    for name in (b"host", b"content-length", b"content-type", b"x-a", b"absent"):
        expected = h.get(name.decode())
        assert header(h, name) == expected
        assert headers_get(h, name, b"absent") == (expected, None)


@given(st.lists(st.tuples(names, values), max_size=6), st.integers(0, 2**40))
def test_content_length_is_set_in_every_field_or_added(fields, n):
    """Every Content-Length field says n, where it stood (a server reads whichever it reads); one is
    added at the end where none was; every other field stays as it was, in order."""
    h = http.Headers(fields)
    set_content_length(h, n)
    before = sum(k.lower() == b"content-length" for k, _ in fields)
    assert h.get_all("content-length") == [str(n)] * max(1, before)
    assert [f for f in h.fields if f[0].lower() != b"content-length"] == \
        [f for f in fields if f[0].lower() != b"content-length"]
    if not before:
        assert h.fields[-1] == (b"content-length", str(n).encode())
