"""Body codecs: byte-exact spans, bounded decompression, clear error codes."""

from __future__ import annotations

import gzip
import urllib.parse
import zlib

import brotli
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloakgate.core.codecs import encoding, form, multipart, splice
from cloakgate.core.errors import BodyError


def test_splice_in_any_order_and_refuses_overlap():
    assert splice(b"abcdef", [(4, 5, b"E"), (0, 1, b"AA")]) == b"AAbcdEf"
    with pytest.raises(ValueError):
        splice(b"abcdef", [(0, 3, b""), (2, 4, b"")])


# --- form ----------------------------------------------------------------------------------------

def test_form_spans_and_values():
    data = b"a=1&name=J%C3%A9r%C3%B4me+D&flag&empty=&a=2"
    fields = form.parse(data)
    assert [(f.name, f.value, f.has_equals) for f in fields] == [
        ("a", "1", True), ("name", "Jérôme D", True), ("flag", "", False), ("empty", "", True), ("a", "2", True)]
    f = fields[1]
    assert data[f.value_start : f.value_end] == b"J%C3%A9r%C3%B4me+D"


@pytest.mark.parametrize(
    "data,charset,code",
    [(b"a=%zz", "utf-8", "cloakgate.body.malformed_form"), (b"a=%4", "utf-8", "cloakgate.body.malformed_form"),
     (b"a=%FF", "utf-8", "cloakgate.body.bad_charset"), (b"a=1", "no-such-charset", "cloakgate.body.bad_charset")],
)
def test_form_errors(data, charset, code):
    with pytest.raises(BodyError) as e:
        form.parse(data, charset)
    assert e.value.code == code


def test_form_latin1_and_field_limit():
    assert form.parse(b"n=J%E9r%F4me", "iso-8859-1")[0].value == "Jérôme"
    with pytest.raises(BodyError) as e:
        form.parse(b"&".join([b"a=1"] * 11), max_fields=10)
    assert e.value.code == "cloakgate.body.too_many_fields"


@given(st.lists(st.tuples(st.text(min_size=1), st.text()), max_size=6))
def test_form_round_trip(pairs):
    data = urllib.parse.urlencode(pairs).encode()
    fields = form.parse(data)
    assert [(f.name, f.value) for f in fields] == pairs
    for f in fields:
        assert form.parse(b"x=" + data[f.value_start : f.value_end])[0].value == f.value
        assert form.parse(b"x=" + form.encode_value(f.value))[0].value == f.value


# --- multipart -----------------------------------------------------------------------------------

B = "----cgBoundaryX"


def mp(*parts: tuple[bytes, bytes], preamble: bytes = b"", epilogue: bytes = b"") -> bytes:
    out = preamble + (b"\r\n" if preamble else b"")
    for headers, body in parts:
        out += b"--" + B.encode() + b"\r\n" + headers + b"\r\n" + body + b"\r\n"
    return out + b"--" + B.encode() + b"--\r\n" + epilogue


def test_multipart_spans_are_byte_exact():
    body = mp(
        (b'Content-Disposition: form-data; name="note"\r\n', b"line one\r\nline two"),
        (b'Content-Disposition: form-data; name="f"; filename="a b.bin"\r\nContent-Type: application/octet-stream\r\n',
         b"\x00\r\n--" + B.encode()[:-1] + b"\xff"),
        (b'Content-Disposition: form-data; name="t"\r\nContent-Type: text/plain; charset=ISO-8859-1\r\n', b"caf\xe9"),
        preamble=b"ignored preamble", epilogue=b"epilogue",
    )
    parts = multipart.parse(body, B)
    assert [(p.name, p.filename, p.content_type, p.charset) for p in parts] == [
        ("note", None, None, None), ("f", "a b.bin", "application/octet-stream", None), ("t", None, "text/plain", "iso-8859-1")]
    assert body[parts[0].body_start : parts[0].body_end] == b"line one\r\nline two"
    new = splice(body, [(parts[0].body_start, parts[0].body_end, b"TOKEN")])
    assert new == body.replace(b"line one\r\nline two", b"TOKEN")
    assert [p.name for p in multipart.parse(new, B)] == ["note", "f", "t"]


@pytest.mark.parametrize(
    "body",
    [b"no delimiter at all", b"--" + B.encode() + b"\r\nContent-Disposition: form-data; name=a\r\n\r\nunterminated",
     b"--" + B.encode() + b"\r\nbad header line\r\n\r\nv\r\n--" + B.encode() + b"--",
     b"--" + B.encode() + b"\r\nContent-Disposition: form-data; name=a\r\nv\r\n--" + B.encode() + b"--"],
)
def test_multipart_malformed(body):
    with pytest.raises(BodyError) as e:
        multipart.parse(body, B)
    assert e.value.code == "cloakgate.body.malformed_multipart"


def test_multipart_limits_boundary_and_replacement_checks():
    many = mp(*[(b'Content-Disposition: form-data; name="a"\r\n', b"x")] * 5)
    with pytest.raises(BodyError) as e:
        multipart.parse(many, B, max_parts=4)
    assert e.value.code == "cloakgate.body.too_many_parts"
    assert multipart.boundary_from_content_type(f'multipart/form-data; boundary="{B}"') == B
    for bad in ("multipart/form-data", "application/json; boundary=x", "multipart/form-data; boundary=" + "x" * 71):
        with pytest.raises(BodyError):
            multipart.boundary_from_content_type(bad)
    with pytest.raises(BodyError):
        multipart.check_replacement(B, b"a\r\n--" + B.encode())


@given(st.lists(st.binary(max_size=50).filter(lambda b: B.encode() not in b and not b.endswith(b"\r")), min_size=1, max_size=5))
def test_multipart_round_trip(bodies):
    body = mp(*[(f'Content-Disposition: form-data; name="p{i}"\r\n'.encode(), b) for i, b in enumerate(bodies)])
    parts = multipart.parse(body, B)
    assert [body[p.body_start : p.body_end] for p in parts] == bodies


# --- content encodings ---------------------------------------------------------------------------

STACKS = [("gzip",), ("x-gzip",), ("deflate",), ("br",), ("zstd",), ("gzip", "br"), ("zstd", "gzip")]


@pytest.mark.parametrize("encs", STACKS)
def test_round_trip(encs):
    data = b"hello world " * 500
    assert encoding.decode(encoding.encode(data, encs), encs, max_size=1 << 20) == data


@pytest.mark.parametrize("encs", STACKS)
def test_bombs_and_corruption(encs):
    bomb = encoding.encode(b"\x00" * (8 << 20), encs)
    with pytest.raises(BodyError) as e:
        encoding.decode(bomb, encs, max_size=1 << 20)
    assert e.value.code == "cloakgate.body.too_large"
    good = encoding.encode(b"hello world " * 50, encs)
    with pytest.raises(BodyError) as e:
        encoding.decode(good[: len(good) // 2], encs, max_size=1 << 20)
    assert e.value.code == "cloakgate.body.malformed_encoding"


def test_header_parsing_and_raw_deflate_and_gzip_members():
    assert encoding.parse_content_encoding("GZIP, br") == ("gzip", "br")
    assert encoding.parse_content_encoding("identity") == ()
    with pytest.raises(BodyError) as e:
        encoding.parse_content_encoding("gzip, snappy")
    assert e.value.code == "cloakgate.body.unknown_encoding" and e.value.status_hint == 415
    raw = zlib.compressobj(1, zlib.DEFLATED, -15)
    assert encoding.decode(raw.compress(b"abc") + raw.flush(), ("deflate",), max_size=10) == b"abc"
    assert encoding.decode(gzip.compress(b"a") + gzip.compress(b"b"), ("gzip",), max_size=10) == b"ab"
    with pytest.raises(BodyError):
        encoding.decode(gzip.compress(b"a") + b"junk", ("gzip",), max_size=10)
    assert brotli.decompress(encoding.encode(b"x", ("br",))) == b"x"
