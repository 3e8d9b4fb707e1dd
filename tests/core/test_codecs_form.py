"""application/x-www-form-urlencoded codec: values, spans, splicing, errors and properties."""

from __future__ import annotations

import urllib.parse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloakgate.core.codecs import form, splice
from cloakgate.core.errors import BodyError

MALFORMED = "cloakgate.body.malformed_form"
BAD_CHARSET = "cloakgate.body.bad_charset"
TOO_MANY = "cloakgate.body.too_many_fields"

PROPS = settings(database=None, deadline=None, max_examples=100)


def fields_of(data: bytes, charset: str = "utf-8") -> list[tuple[str, str, bytes, bool]]:
    return [(f.name, f.value, data[f.value_start : f.value_end], f.has_equals)
            for f in form.parse(data, charset)]


@pytest.mark.parametrize("data,expected", [
    (b"", []),
    (b"&&&", []),
    (b"a=1", [("a", "1", b"1", True)]),
    (b"a=1&b=2", [("a", "1", b"1", True), ("b", "2", b"2", True)]),
    (b"a=1&a=2", [("a", "1", b"1", True), ("a", "2", b"2", True)]),  # duplicates kept, in order
    (b"flag", [("flag", "", b"", False)]),
    (b"a=", [("a", "", b"", True)]),
    (b"=v", [("", "v", b"v", True)]),
    (b"=", [("", "", b"", True)]),
    (b"a=1&&b=2&", [("a", "1", b"1", True), ("b", "2", b"2", True)]),
    (b"a=1;b=2", [("a", "1;b=2", b"1;b=2", True)]),  # ';' is not a separator
    (b"a=b=c", [("a", "b=c", b"b=c", True)]),  # split at the first '='
    (b"q=a+b%20c", [("q", "a b c", b"a+b%20c", True)]),
    (b"k=%2B%26%3D%25", [("k", "+&=%", b"%2B%26%3D%25", True)]),
    (b"%61%62=%63", [("ab", "c", b"%63", True)]),
    (b"n=J%C3%A9r%C3%B4me+D", [("n", "Jérôme D", b"J%C3%A9r%C3%B4me+D", True)]),
    (b"n=%e2%82%ac", [("n", "€", b"%e2%82%ac", True)]),  # lower-case hex
    (b"n=%E2%82%aC", [("n", "€", b"%E2%82%aC", True)]),  # mixed case
    (b"n=\xe2\x82\xac", [("n", "€", b"\xe2\x82\xac", True)]),  # raw UTF-8
    (b"n=%F0%9F%94%91", [("n", "\U0001f511", b"%F0%9F%94%91", True)]),
    (b"a%26b=1", [("a&b", "1", b"1", True)]),
    (b"x=%00%0D%0A", [("x", "\x00\r\n", b"%00%0D%0A", True)]),
])
def test_parse_values_and_spans(data, expected):
    assert fields_of(data) == expected


def test_field_without_equals_has_its_span_at_the_end_of_its_name():
    data = b"a=1&flag&b=2"
    f = form.parse(data)[1]
    assert (f.index, f.name, f.has_equals, f.value_start, f.value_end) == (1, "flag", False, 8, 8)


def test_indices_count_non_empty_fields():
    assert [f.index for f in form.parse(b"&a=1&&b&c=")] == [0, 1, 2]


@pytest.mark.parametrize("data,charset,value", [
    (b"n=J%E9r%F4me", "iso-8859-1", "Jérôme"),
    (b"n=J\xe9r\xf4me", "latin-1", "Jérôme"),  # raw bytes decoded with the charset
    (b"n=%80", "windows-1252", "€"),
    (b"n=%A4", "iso-8859-15", "€"),
    (b"n=%82%A0", "shift_jis", "あ"),
    (b"n=%B0%A1", "euc-kr", "가"),
    (b"n=%C4%E3", "gb18030", "你"),
    (b"n=%E3%81%82", "UTF-8", "あ"),
])
def test_charsets(data, charset, value):
    assert form.parse(data, charset)[0].value == value


@pytest.mark.parametrize("data,charset,code", [
    (b"a=%zz", "utf-8", MALFORMED),
    (b"a=%4", "utf-8", MALFORMED),  # truncated at the end
    (b"a=%4&b=1", "utf-8", MALFORMED),  # truncated before a separator
    (b"a=%", "utf-8", MALFORMED),
    (b"a=%g1", "utf-8", MALFORMED),
    (b"a=100%", "utf-8", MALFORMED),
    (b"%zz=1", "utf-8", MALFORMED),  # in a name
    (b"flag%", "utf-8", MALFORMED),
    (b"a=%FF", "utf-8", BAD_CHARSET),
    (b"a=\xff", "utf-8", BAD_CHARSET),  # raw invalid byte
    (b"a=%C3", "utf-8", BAD_CHARSET),  # truncated sequence
    (b"a=%C0%AF", "utf-8", BAD_CHARSET),  # overlong
    (b"a=%ED%A0%80", "utf-8", BAD_CHARSET),  # surrogate
    (b"%FF=1", "utf-8", BAD_CHARSET),
    (b"a=%81", "windows-1252", BAD_CHARSET),  # undefined in cp1252
    (b"a=%82", "shift_jis", BAD_CHARSET),  # lead byte without trail
    (b"a=1", "no-such-charset", BAD_CHARSET),
    (b"a=1", "", BAD_CHARSET),
    (b"a=1", "hex", BAD_CHARSET),  # a codec, but not a text encoding
    (b"a=1", "rot13", BAD_CHARSET),
    (b"a=1", "utf-16", BAD_CHARSET),  # not ASCII-compatible: '&' and '=' would be ambiguous
    (b"a=1", "utf-32-le", BAD_CHARSET),
    (b"a=1", "utf-7", BAD_CHARSET),
    (b"a=1", "utf-8\x00", BAD_CHARSET),
])
def test_errors(data, charset, code):
    with pytest.raises(BodyError) as e:
        form.parse(data, charset)
    assert e.value.code == code
    assert b"zz" not in str(e.value).encode() and "\xff" not in str(e.value)


def test_field_limit():
    assert len(form.parse(b"&".join([b"a=1"] * 10), max_fields=10)) == 10
    assert len(form.parse(b"a=1&&&&&&b=2", max_fields=2)) == 2  # empty fields do not count
    with pytest.raises(BodyError) as e:
        form.parse(b"&".join([b"a=1"] * 11), max_fields=10)
    assert e.value.code == TOO_MANY


def test_large_input_is_linear():
    data = b"&".join(b"k%d=%s" % (i, b"%41" * 50) for i in range(20_000))
    fields = form.parse(data, max_fields=20_000)
    assert len(fields) == 20_000 and fields[-1].value == "A" * 50


@pytest.mark.parametrize("value,charset,encoded", [
    ("", "utf-8", b""),
    ("a b", "utf-8", b"a+b"),
    ("AZaz09-._*", "utf-8", b"AZaz09-._*"),
    ("~!'()", "utf-8", b"%7E%21%27%28%29"),
    ("+&=%;#/?", "utf-8", b"%2B%26%3D%25%3B%23%2F%3F"),
    ("é", "utf-8", b"%C3%A9"),
    ("é", "iso-8859-1", b"%E9"),
    ("€", "windows-1252", b"%80"),
    ("\r\n\x00", "utf-8", b"%0D%0A%00"),
    ("\U0001f511", "utf-8", b"%F0%9F%94%91"),
    ("あ", "shift_jis", b"%82%A0"),
])
def test_encode_value(value, charset, encoded):
    assert form.encode_value(value, charset) == encoded
    assert form.parse(b"x=" + encoded, charset)[0].value == value


@pytest.mark.parametrize("value,charset", [
    ("€", "iso-8859-1"), ("\ud800", "utf-8"), ("a", "nope"), ("a", "utf-16"),
])
def test_encode_value_refuses(value, charset):
    with pytest.raises(BodyError) as e:
        form.encode_value(value, charset)
    assert e.value.code == BAD_CHARSET


def test_splice_one_value_keeps_every_other_byte():
    data = b"keep=%7e%2f+x&secret=J%C3%A9r%C3%B4me&flag&other=a;b&secret2"
    fields = form.parse(data)
    s, f = fields[1], fields[4]
    new = splice(data, [(s.value_start, s.value_end, form.encode_value("TOKEN 1")),
                        (f.value_start, f.value_end, b"=" + form.encode_value("T2"))])  # no '=' before
    assert new == b"keep=%7e%2f+x&secret=TOKEN+1&flag&other=a;b&secret2=T2"
    assert [(x.name, x.value) for x in form.parse(new)] == [
        ("keep", "~/ x"), ("secret", "TOKEN 1"), ("flag", ""), ("other", "a;b"), ("secret2", "T2")]


# --- properties ----------------------------------------------------------------------------------

TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)


@PROPS
@given(st.lists(st.tuples(TEXT, TEXT), max_size=6))
def test_urlencoded_pairs_parse_back(pairs):
    data = urllib.parse.urlencode(pairs).encode("ascii")
    fields = form.parse(data)
    assert [(f.name, f.value) for f in fields] == pairs  # ("", "") is written "=": a field too
    for f in fields:
        raw = data[f.value_start : f.value_end]
        assert urllib.parse.unquote_plus(raw.decode("ascii"), errors="strict") == f.value
        assert form.parse(b"x=" + raw)[0].value == f.value


@PROPS
@given(st.lists(st.tuples(TEXT, TEXT), min_size=1, max_size=6), st.sampled_from(["utf-8", "latin-1"]),
       st.data())
def test_spans_splice_and_charsets(pairs, charset, data):
    if charset == "latin-1":
        pairs = [tuple(x.encode("latin-1", "replace").decode("latin-1") for x in pair) for pair in pairs]
    body = urllib.parse.urlencode(pairs, encoding=charset).encode("ascii")
    fields = form.parse(body, charset)
    assert [(f.name, f.value) for f in fields] == pairs
    i = data.draw(st.integers(0, len(fields) - 1))
    new_value = data.draw(TEXT) if charset == "utf-8" else "tok en"
    f = fields[i]
    new = splice(body, [(f.value_start, f.value_end, form.encode_value(new_value, charset))])
    assert new[: f.value_start] == body[: f.value_start] and new.endswith(body[f.value_end :])
    again = form.parse(new, charset)
    expected = [(k, new_value if j == i else v) for j, (k, v) in enumerate(pairs)]
    assert [(g.name, g.value) for g in again] == expected


@PROPS
@given(TEXT)
def test_encode_value_round_trips_and_is_browser_safe(value):
    enc = form.encode_value(value)
    assert set(enc) <= set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._*+%")
    assert form.parse(b"x=" + enc)[0].value == value
    assert enc == urllib.parse.quote_plus(value, safe="*").replace("~", "%7E").encode()


@PROPS
@given(st.lists(st.one_of(st.binary(max_size=6),
                          st.sampled_from([b"&", b"=", b"%", b"+", b"%4", b"%C3%A9", b";"])),
                max_size=12).map(b"".join),
       st.sampled_from(["utf-8", "latin-1", "shift_jis"]))
def test_arbitrary_bytes_parse_or_fail_with_a_code(data, charset):
    try:
        fields = form.parse(data, charset)
    except BodyError as e:
        assert e.code in (MALFORMED, BAD_CHARSET)
        return
    prev = 0
    for f in fields:
        assert prev <= f.value_start <= f.value_end <= len(data)
        if f.has_equals:
            assert data[f.value_start - 1] == ord("=")
            assert form.parse(b"x=" + data[f.value_start : f.value_end], charset)[0].value == f.value
        assert b"&" not in data[f.value_start : f.value_end]
        prev = f.value_end
