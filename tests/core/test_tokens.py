import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloakgate.core import tokens
from cloakgate.core.errors import InvalidToken


@pytest.mark.parametrize("n", [0, 1, 15, 16, 255, 256, 4095, 4096, 70000])
def test_length_varint_round_trip(n):
    tok = tokens.encode("a", "abc", b"\x00" * ((n * 5) // 8))
    p, payload = tokens.split(tok)
    assert p.total_len == len(tok)
    assert p.kid == "abc" and p.scheme == "a"
    assert len(payload) == p.payload_len


def test_alphabet_is_lowercase_alphanumeric_and_markup_free():
    tok = tokens.encode("d", "xyz", bytes(range(256)))
    assert tok.isalnum() and tok == tok.lower()
    assert not set(tok) & set("<>&\"'*_-+~^{}[]|!@.:/\\=%#`")


def test_parse_is_case_insensitive():
    tok = tokens.encode("w", "abc", b"hello world 1234")
    p, payload = tokens.split(tok.upper())
    assert p.kid == "abc"
    assert tokens.b32decode(payload.lower()) == b"hello world 1234"


def test_truncated_token_is_recognised():
    tok = tokens.encode("a", "abc", b"x" * 40)
    for cut in (len(tok) - 1, len(tok) // 2, 8):
        with pytest.raises(InvalidToken):
            tokens.split(tok[:cut])


def test_trailing_characters_are_not_part_of_the_token():
    tok = tokens.encode("a", "abc", b"x" * 40)
    p, _ = tokens.split(tok + "abcdef")
    assert p.total_len == len(tok)


@pytest.mark.parametrize("bad", ["", "qx", "qxz", "qxaab", "qxa@bcd", "hello", "qxaabc", "qxaabcq", "qxaabc7777777"])
def test_garbage_is_invalid(bad):
    with pytest.raises(InvalidToken):
        tokens.split(bad)


def test_scanner_needs_a_word_boundary():
    tok = tokens.encode("a", "abc", b"x" * 20)
    assert tokens.TOKEN_RE.search(("x" + tok).encode()) is None
    assert tokens.TOKEN_RE.search((">" + tok + "<").encode()).group().decode() == tok


@pytest.mark.parametrize("before", ["\\n", "\\t", "\\u001f", "%0A", " ", '"', ">"])
def test_scanner_finds_tokens_after_escapes(before):
    tok = tokens.encode("w", "abc", b"x" * 20)
    assert tokens.TOKEN_RE.search((before + tok).encode()).group().decode() == tok


RFC4648_BASE32 = [(b"", ""), (b"f", "my"), (b"fo", "mzxq"), (b"foo", "mzxw6"), (b"foob", "mzxw6yq"),
                  (b"fooba", "mzxw6ytb"), (b"foobar", "mzxw6ytboi")]  # RFC 4648 section 10, unpadded


@pytest.mark.parametrize("data,text", RFC4648_BASE32)
def test_base32_matches_the_rfc_vectors(data, text):
    assert tokens.b32encode(data) == text
    assert tokens.b32decode(text) == data and tokens.b32decode(text.upper()) == data


def test_base32_decodes_long_payloads():  # int() limits the digits of other bases, not of base 32
    data = bytes(range(256)) * 200
    assert tokens.b32decode(tokens.b32encode(data)) == data


@given(st.binary(max_size=1000))
def test_base32_encoding_matches_the_standard_library(data):
    assert tokens.b32encode(data) == base64.b32encode(data).decode("ascii").rstrip("=").lower()


@pytest.mark.parametrize("n", [1, 4, 5, 6, 319, 320, 321, 639, 640, 641, 51_203])
def test_base32_encoding_matches_the_standard_library_across_slices(n):  # one integer per 320 bytes
    data = (bytes(range(256)) * (n // 256 + 1))[:n]
    assert tokens.b32encode(data) == base64.b32encode(data).decode("ascii").rstrip("=").lower()


@given(st.binary(max_size=300))
def test_base32_decoding_inverts_encoding(data):
    assert tokens.b32decode(tokens.b32encode(data)) == data


@given(st.text(alphabet="abcxyz2367AZ018_ +-\u212a", max_size=20))  # no "=": payloads carry no padding
def test_base32_decoding_refuses_what_the_standard_library_refuses(text):
    pad = {0: "", 2: "======", 4: "====", 5: "===", 7: "="}.get(len(text) % 8)
    try:
        expected = base64.b32decode(text.upper() + pad) if pad is not None and text.isascii() else None
    except ValueError:
        expected = None
    try:
        got = tokens.b32decode(text)
    except InvalidToken:
        got = None
    assert got == expected
