import pytest

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
