"""Multipart codec: byte-exact spans, splicing, parameters, framing errors, limits and properties."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cloakgate.core.codecs import multipart, splice
from cloakgate.core.errors import BodyError

MALFORMED = "cloakgate.body.malformed_multipart"
TOO_MANY = "cloakgate.body.too_many_parts"
B = "----cgBoundaryX7"
D = b"--" + B.encode()

PROPS = settings(database=None, deadline=None, max_examples=80, suppress_health_check=[HealthCheck.too_slow])


def build(*parts: tuple[bytes, bytes], boundary: bytes = D, preamble: bytes | None = None,
          epilogue: bytes = b"\r\n", padding: bytes = b"") -> bytes:
    """parts are (header block without its last CRLF, body); b"" headers means no headers."""
    out = b"" if preamble is None else preamble + b"\r\n"
    for headers, body in parts:
        out += boundary + padding + b"\r\n" + (headers + b"\r\n" if headers else b"")
        out += b"\r\n" + body + b"\r\n"
    return out + boundary + b"--" + epilogue


def cd(name: str, filename: str | None = None) -> bytes:
    h = f'Content-Disposition: form-data; name="{name}"'
    return (h + (f'; filename="{filename}"' if filename is not None else "")).encode()


def code_of(body: bytes, boundary: str = B, **kw) -> str:
    with pytest.raises(BodyError) as e:
        multipart.parse(body, boundary, **kw)
    return e.value.code


# --- boundary ------------------------------------------------------------------------------------

@pytest.mark.parametrize("content_type,boundary", [
    ("multipart/form-data; boundary=abc", "abc"),
    ('multipart/form-data; boundary="abc"', "abc"),
    (f"multipart/form-data; boundary={B}", B),
    ("Multipart/Form-Data; charset=utf-8; BOUNDARY=x", "x"),
    ('multipart/mixed;boundary="a b"', "a b"),
    ("multipart/related; type=text/html; boundary=----=_Part_0_1.2", "----=_Part_0_1.2"),
    ("multipart/form-data; boundary=\"'()+_,-./:=?\"", "'()+_,-./:=?"),
    ("multipart/form-data; boundary=" + "x" * 70, "x" * 70),
    ("multipart/form-data ; boundary = abc ;", "abc"),
])
def test_boundary_from_content_type(content_type, boundary):
    assert multipart.boundary_from_content_type(content_type) == boundary


@pytest.mark.parametrize("content_type", [
    "multipart/form-data",
    "multipart/form-data; charset=utf-8",
    "application/json; boundary=x",
    "text/plain; boundary=x",
    "multipart/form-data; boundary=" + "x" * 71,
    'multipart/form-data; boundary=""',
    "multipart/form-data; boundary=",
    'multipart/form-data; boundary="abc "',  # a space may not end a boundary
    'multipart/form-data; boundary="a@b"',
    "multipart/form-data; boundary=a\tb",
    'multipart/form-data; boundary="abc',  # unterminated
    "multipart/form-data; boundary=a; boundary=b",  # two boundaries: which one?
    "multipart/form-data; boundary=é",
    "multipart/form-data; boundary",
])
def test_boundary_from_content_type_refuses(content_type):
    with pytest.raises(BodyError) as e:
        multipart.boundary_from_content_type(content_type)
    assert e.value.code == MALFORMED


@pytest.mark.parametrize("boundary", ["", "x" * 71, "a@b", "abc ", "é"])
def test_parse_and_check_replacement_refuse_invalid_boundaries(boundary):
    with pytest.raises(BodyError) as e:
        multipart.parse(b"--x\r\n\r\n\r\n--x--", boundary)
    assert e.value.code == MALFORMED
    with pytest.raises(BodyError):
        multipart.check_replacement(boundary, b"v")


# --- byte-exact spans and splicing ---------------------------------------------------------------

BINARY = b"\x00\xff\r\n--" + B.encode()[:-1] + b"\r\n\r\n\r-" + B.encode() + b"x\n\r" + bytes(range(256))
PARTS = [
    (cd("note"), b"line one\r\nline two\r\n"),
    (cd("f", "a b.bin") + b"\r\nContent-Type: application/octet-stream", BINARY),
    (cd("t") + b"\r\nContent-Type: Text/Plain; charset=ISO-8859-1\r\nX-Custom: kept", b"caf\xe9"),
    (cd("empty"), b""),
    (b"Content-Disposition: form-data; name=\"e\"\r\nContent-Transfer-Encoding: BASE64", b"aGk="),
    (b"", b"a part without headers"),
]


@pytest.fixture
def sample() -> bytes:
    return build(*PARTS, preamble=b"This is the preamble.\r\n--not a delimiter",
                 epilogue=b"\r\nthe epilogue\r\n", padding=b" \t")


def test_parse_reports_exact_spans_and_metadata(sample):
    parts = multipart.parse(sample, B)
    assert [(p.index, p.name, p.filename, p.content_type, p.charset, p.transfer_encoding) for p in parts] == [
        (0, "note", None, None, None, None),
        (1, "f", "a b.bin", "application/octet-stream", None, None),
        (2, "t", None, "text/plain", "iso-8859-1", None),
        (3, "empty", None, None, None, None),
        (4, "e", None, None, None, "base64"),
        (5, None, None, None, None, None),
    ]
    for p, (headers, body) in zip(parts, PARTS, strict=True):
        assert sample[p.headers_start : p.headers_end] == headers
        assert sample[p.body_start : p.body_end] == body
        assert p.headers_start <= p.headers_end <= p.body_start <= p.body_end


@pytest.mark.parametrize("target", range(len(PARTS)))
@pytest.mark.parametrize("new_body", [
    b"", b"TOKEN", b"v\r\nwith\r\nCRLF and \x00\xff binary", b"--" + B.encode()[:-1],
])
def test_splice_one_part_keeps_every_other_byte(sample, target, new_body):
    parts = multipart.parse(sample, B)
    p = parts[target]
    multipart.check_replacement(B, new_body)
    new = splice(sample, [(p.body_start, p.body_end, new_body)])
    assert new[: p.body_start] == sample[: p.body_start]  # boundary, preamble, headers, filenames
    assert new[p.body_start + len(new_body) :] == sample[p.body_end :]  # later parts, epilogue
    again = multipart.parse(new, B)
    assert [new[q.body_start : q.body_end] for q in again] == [
        new_body if i == target else body for i, (_h, body) in enumerate(PARTS)]
    assert [new[q.headers_start : q.headers_end] for q in again] == [h for h, _b in PARTS]
    meta = [(q.name, q.filename, q.content_type, q.charset, q.transfer_encoding) for q in parts]
    assert [(q.name, q.filename, q.content_type, q.charset, q.transfer_encoding) for q in again] == meta


def test_splice_several_parts_in_any_order(sample):
    parts = multipart.parse(sample, B)
    edits = [(parts[i].body_start, parts[i].body_end, b"T%d" % i) for i in (4, 0, 2)]
    again = multipart.parse(splice(sample, edits), B)
    assert [q.name for q in again] == [q.name for q in parts]


def test_zero_parts_and_first_delimiter_at_the_start():
    assert multipart.parse(D + b"--\r\n", B) == []
    assert multipart.parse(D + b"--", B) == []
    body = build((cd("a"), b"1"), epilogue=b"")
    assert [(p.name, body[p.body_start : p.body_end]) for p in multipart.parse(body, B)] == [("a", b"1")]


def test_the_preamble_and_epilogue_are_free_text_without_the_boundary():
    body = build((cd("a"), b"1"), preamble=b"--" + B.encode()[:-1] + b"\r\n\r\n",
                 epilogue=b"\r\n-" + B.encode())
    assert [p.name for p in multipart.parse(body, B)] == ["a"]


def test_multipart_mixed_without_content_disposition():
    body = build((b"Content-Type: text/plain; charset=\"UTF-8\"", b"hello"),
                 (b"Content-Type: message/rfc822", b"Subject: x\r\n\r\nbody"))
    parts = multipart.parse(body, B)
    assert [(p.name, p.content_type, p.charset) for p in parts] == [
        (None, "text/plain", "utf-8"), (None, "message/rfc822", None)]


# --- Content-Disposition parameters --------------------------------------------------------------

@pytest.mark.parametrize("disposition,name,filename", [
    (b"form-data; name=plain", "plain", None),
    (b'form-data; name="quoted"', "quoted", None),
    (b'form-data;name="x";filename="y.txt"', "x", "y.txt"),
    (b'form-data ; NAME = "x" ; FileName = "y"', "x", "y"),
    (b'form-data; name="a;b,c=d"', "a;b,c=d", None),
    (b'form-data; name="a\\"b"', 'a"b', None),
    (b'form-data; name="a\\\\b"', "a\\b", None),
    (b'form-data; name=""', "", None),
    (b'form-data; name="%22x%22"', "%22x%22", None),  # WHATWG escapes are not decoded
    (b"form-data; name*=UTF-8''caf%C3%A9", "café", None),
    (b"form-data; name*=utf-8'en'%E2%82%AC", "€", None),
    (b"form-data; name*=iso-8859-1''caf%E9", "café", None),
    (b"form-data; name=\"caf\xc3\xa9\"; name*=UTF-8''caf%C3%A9", "café", None),  # both, agreeing
    (b'form-data; name="n"; filename="C:\\dir\\f.txt"', "n", "C:\\dir\\f.txt"),  # IE path kept literally
    (b"form-data; name=\"n\"; filename=\"r\xc3\xa9sum\xc3\xa9.pdf\"", "n", "résumé.pdf"),  # raw UTF-8
    (b"form-data; name=n; filename=\"fallback.txt\"; filename*=UTF-8''%E2%82%AC.txt", "n", "€.txt"),
    (b'form-data; name="n"; filename=""', "n", ""),
    (b"attachment; filename=x.bin", None, "x.bin"),
    (b"form-data", None, None),
    (b"form-data;", None, None),
])
def test_content_disposition(disposition, name, filename):
    body = build((b"Content-Disposition: " + disposition, b"v"))
    [p] = multipart.parse(body, B)
    assert (p.name, p.filename) == (name, filename)


@pytest.mark.parametrize("disposition", [
    b'form-data; name="a\\b"',  # servers disagree on "\b": refused for the name
    b'form-data; name="x"; name="y"',
    b"form-data; name=\"a\"; name*=UTF-8''b",  # two different names
    b'form-data; name*0="a"; name*1="b"',  # RFC 2231 continuations
    b"form-data; name*0*=UTF-8''a",
    b"form-data; name*=UTF-8''%zz",
    b"form-data; name*=UTF-8''%C3",  # not UTF-8
    b"form-data; name*=nocharset",
    b"form-data; name*=''x",
    b"form-data; name*=bogus''x",
    b"form-data; name*=hex''41",
    b"form-data; name*=UTF-8''caf\xc3\xa9",  # not percent-encoded
    b'form-data; name="unterminated',
    b"form-data; name=a b",
    b'form-data; name=a"b',
    b"form-data; name",
    b"form-data; name=",
    b'form-data; name="a" junk',
    b"form-data; =x",
    b"form-data; name=\"\xff\"",  # not UTF-8
])
def test_content_disposition_refused(disposition):
    assert code_of(build((b"Content-Disposition: " + disposition, b"v"))) == MALFORMED


# --- framing errors ------------------------------------------------------------------------------

def _swallow() -> bytes:
    # A part with no headers whose blank line is directly followed by a delimiter: a parser that
    # looks for the body after the blank line would swallow the next part (and its name).
    return D + b"\r\n\r\n" + D + b"\r\n" + cd("ssn") + b"\r\n\r\nsecret\r\n" + D + b"--\r\n"


MALFORMED_BODIES = {
    "empty": b"",
    "no delimiter": b"just some text",
    "delimiter not at a line start": b"x" + D + b"\r\n" + cd("a") + b"\r\n\r\nv\r\n" + D + b"--",
    "no close delimiter": D + b"\r\n" + cd("a") + b"\r\n\r\nunterminated",
    "no close delimiter after a part": D + b"\r\n" + cd("a") + b"\r\n\r\nv\r\n" + D + b"\r\n",
    "ends after a delimiter": D + b"\r\n" + cd("a") + b"\r\n\r\nv\r\n" + D,
    "delimiter followed by garbage": D + b"X\r\n" + cd("a") + b"\r\n\r\nv\r\n" + D + b"--",
    "longer boundary inside": build((cd("a"), b"v\r\n" + D + b"X\r\nmore")),
    "close with single dash": D + b"\r\n" + cd("a") + b"\r\n\r\nv\r\n" + D + b"-",
    "no header/body separator": D + b"\r\n" + cd("a") + b"\r\nv\r\n" + D + b"--",
    "headers only, no blank line": D + b"\r\n" + cd("a") + b"\r\n" + D + b"--",
    "empty part, no blank line": D + b"\r\n" + D + b"--",
    "part swallowing the next": _swallow(),
    "bare LF everywhere": D + b"\n" + cd("a") + b"\n\nv\n" + D + b"--\n",
    "bare LF delimiter in a body": build((cd("a"), b"x\n" + D + b"\n" + cd("ssn") + b"\n\nsecret")),
    "bare LF delimiter in the preamble": b"pre\n" + D + b"\r\n" + build((cd("a"), b"v")),
    "boundary mid-line in a body": build((cd("a"), b"x" + D + b"\r\n" + cd("ssn") + b"\r\n\r\nsecret")),
    "boundary in the epilogue": build((cd("a"), b"v"),
                                      epilogue=b"\r\n" + D + b"\r\n" + cd("ssn") + b"\r\n\r\ns"),
    "boundary in the preamble": build((cd("a"), b"v"), preamble=b"pre " + D),
    "header without colon": build((b"bad header line", b"v")),
    "header with space before colon": build((b"Content-Disposition : form-data; name=a", b"v")),
    "empty header name": build((b": v", b"v")),
    "folded header": build((cd("a") + b"\r\n continued", b"v")),
    "NUL in header": build((cd("a") + b"\r\nX-A: a\x00b", b"v")),
    "bare CR in header": build((cd("a") + b"\r\nX-A: a\rb", b"v")),
    "bare LF in header": build((b"Content-Disposition: form-data; name=a\nX-A: b", b"v")),
    "repeated Content-Disposition": build((cd("a") + b"\r\n" + cd("b"), b"v")),
    "repeated Content-Type": build((cd("a") + b"\r\nContent-Type: text/plain\r\nContent-Type: a/b", b"v")),
    "empty Content-Type": build((cd("a") + b"\r\nContent-Type: ", b"v")),
    "bad Content-Type parameter": build((cd("a") + b'\r\nContent-Type: text/plain; charset="x', b"v")),
}


@pytest.mark.parametrize("body", MALFORMED_BODIES.values(), ids=MALFORMED_BODIES.keys())
def test_malformed_bodies(body):
    assert code_of(body) == MALFORMED


def test_error_messages_hold_no_input():
    body = build((b'Content-Disposition: form-data; name="SECRETNAME"\r\nX: SECRETVALUE\x00', b"SECRETBODY"))
    with pytest.raises(BodyError) as e:
        multipart.parse(body, B)
    assert "SECRET" not in str(e.value)


def test_part_limit():
    body = build(*[(cd("a"), b"x")] * 5)
    assert len(multipart.parse(body, B, max_parts=5)) == 5
    assert code_of(body, max_parts=4) == TOO_MANY
    assert multipart.parse(D + b"--", B, max_parts=0) == []


def test_unrelated_headers_may_repeat_and_need_not_be_utf8():
    body = build((cd("a") + b"\r\nX-Tag: 1\r\nX-Tag: 2\r\nX-Latin: caf\xe9", b"v"))
    assert [p.name for p in multipart.parse(body, B)] == ["a"]


@pytest.mark.parametrize("new_body", [
    b"", b"TOKEN", b"--", D[:-1], b"-" + D[2:], b"\r\n--" + D[2:-1], b"a\r", b"\r\n",
])
def test_check_replacement_accepts(new_body):
    multipart.check_replacement(B, new_body)


@pytest.mark.parametrize("new_body", [
    D, D + b"--", D + b"\r\n", b"a\r\n" + D, b"a\n" + D, b"\n" + D + b"x", b"x" + D,
])
def test_check_replacement_refuses(new_body):
    with pytest.raises(BodyError) as e:
        multipart.check_replacement(B, new_body)
    assert e.value.code == MALFORMED


@pytest.mark.parametrize("body", [
    build(*[(cd("p"), b"\r\n--" + D[2:-1]) for _ in range(1000)]),  # many near-delimiters, many parts
    build((cd("big"), (b"\r\n--" + D[2:-1] + b"\r") * 40_000)),
    build((cd("big"), b"\r\n" * 500_000)),
    build((cd("a") + b"\r\n" + b"X-H: v\r\n" * 20_000, b"v")),
])
def test_large_inputs_are_fast(body):
    t0 = time.perf_counter()
    multipart.parse(body, B)
    assert time.perf_counter() - t0 < 2.0


def test_pathological_inputs_are_refused_fast():
    for body in [b"\r\n" * 500_000, (b"\r\n" + D + b"X") * 50_000, D + b"\r\n" + b"a" * 1_000_000,
                 D + b"\r\n" + (b"\n" + D) * 50_000]:
        t0 = time.perf_counter()
        with pytest.raises(BodyError):
            multipart.parse(body, B)
        assert time.perf_counter() - t0 < 2.0


# --- properties ----------------------------------------------------------------------------------

BCHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'()+_,-./:=? "
boundaries = st.text(alphabet=BCHARS, min_size=1, max_size=70).filter(lambda b: not b.endswith(" "))


def part_bodies(boundary: str) -> st.SearchStrategy[bytes]:
    d = b"--" + boundary.encode()
    pieces = st.one_of(st.binary(max_size=10),
                       st.sampled_from([b"\r\n", b"\r", b"\n", b"--", b"\r\n--", d[:-1], d[:1], d[1:]]))
    return st.lists(pieces, max_size=8).map(b"".join).filter(lambda v: d not in v)


names = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=10)


def quote(s: str) -> bytes:
    return b'"' + s.replace("\\", "\\\\").replace('"', '\\"').encode() + b'"'


@st.composite
def multipart_bodies(draw):
    boundary = draw(boundaries)
    bodies = draw(st.lists(part_bodies(boundary), min_size=1, max_size=5))
    pnames = draw(st.lists(names, min_size=len(bodies), max_size=len(bodies)))
    headers = [b"Content-Disposition: form-data; name=" + quote(n) for n in pnames]
    preamble = draw(st.none() | part_bodies(boundary))
    epilogue = draw(part_bodies(boundary))
    body = build(*zip(headers, bodies, strict=True), boundary=b"--" + boundary.encode(), preamble=preamble,
                 epilogue=b"\r\n" + epilogue)
    return boundary, body, headers, bodies, pnames


@PROPS
@given(multipart_bodies())
def test_built_bodies_parse_back_to_their_spans(case):
    boundary, body, headers, bodies, pnames = case
    parts = multipart.parse(body, boundary)
    assert [body[p.body_start : p.body_end] for p in parts] == bodies
    assert [body[p.headers_start : p.headers_end] for p in parts] == headers
    assert [p.name for p in parts] == pnames


@PROPS
@given(multipart_bodies(), st.data())
def test_splicing_a_checked_replacement_changes_only_that_part(case, data):
    boundary, body, headers, bodies, _names = case
    parts = multipart.parse(body, boundary)
    i = data.draw(st.integers(0, len(parts) - 1))
    new_body = data.draw(part_bodies(boundary))
    multipart.check_replacement(boundary, new_body)
    p = parts[i]
    new = splice(body, [(p.body_start, p.body_end, new_body)])
    assert new[: p.body_start] == body[: p.body_start]
    assert new[p.body_start + len(new_body) :] == body[p.body_end :]
    again = multipart.parse(new, boundary)
    expected = [new_body if j == i else b for j, b in enumerate(bodies)]
    assert [new[q.body_start : q.body_end] for q in again] == expected


@PROPS
@given(boundaries, st.binary(min_size=1, max_size=40))
def test_check_replacement_refusals_are_exactly_the_framing_breakers(boundary, new_body):
    d = b"--" + boundary.encode()
    breaks = d in new_body
    try:
        multipart.check_replacement(boundary, new_body)
    except BodyError:
        assert breaks
    else:
        assert not breaks


@PROPS
@given(st.lists(st.sampled_from([D, D + b"--", b"\r\n", b"\n", b"\r", b"--", cd("a"), b": ", b"x",
                                 b"Content-Type: text/plain", b"\x00\xff", b"; name*=UTF-8''%41", b'"']),
                max_size=25).map(b"".join))
def test_arbitrary_bytes_parse_consistently_or_fail_with_a_code(body):
    try:
        parts = multipart.parse(body, B, max_parts=10)
    except BodyError as e:
        assert e.code in (MALFORMED, TOO_MANY)
        return
    prev = 0
    for p in parts:
        assert prev <= p.headers_start <= p.headers_end <= p.body_start <= p.body_end <= len(body)
        assert body[p.body_end : p.body_end + len(D) + 2] == b"\r\n" + D
        assert b"\r\n" + D not in body[p.headers_start : p.body_end]
        prev = p.body_end


@PROPS
@given(multipart_bodies(), st.integers(1, 200))
def test_truncated_bodies_never_parse_to_different_parts(case, cut):
    boundary, body, *_ = case
    assume(cut < len(body))
    try:
        parts = multipart.parse(body[:-cut], boundary)
    except BodyError as e:
        assert e.code == MALFORMED
    else:
        full = multipart.parse(body, boundary)  # only the epilogue was cut
        assert [(p.body_start, p.body_end) for p in parts] == [(p.body_start, p.body_end) for p in full]
