"""The reveal scanner: segments (a token's start to the end of its string or text node) found by one
split, the candidates in a segment by another, caches (per token and per segment).

The scanner must behave exactly like the token grammar's own regex (tokens.TOKEN_RE) applied token
by token, whether its caches are cold or warm, in every context (each ends segments elsewhere).
"""

from __future__ import annotations

import json
import os

from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloakgate.core import reveal, schemes, tokens
from cloakgate.core.errors import InvalidToken
from cloakgate.core.keyring import StaticKeyRing
from cloakgate.core.reveal import Revealer, escape_for
from tests.conftest import make_key

KEY = make_key("abc", "test")
RING = StaticKeyRing([KEY])


def word(text: str) -> str:
    return schemes.Words().protect(text, KEY, RING, os.urandom)


def det(text: str) -> str:
    return schemes.Deterministic().protect(text, KEY, RING, os.urandom)


def aead(text: str) -> str:
    return schemes.Aead().protect(text, KEY, RING, os.urandom)


def reference(data: bytes, context: str) -> bytes:
    """What the grammar says: every TOKEN_RE match that verifies is replaced, the rest stays."""
    out, last = [], 0
    for m in tokens.TOKEN_RE.finditer(data):
        cand = m.group().decode()
        try:
            plain, n = schemes.reveal_token(cand, RING)
        except InvalidToken:
            continue
        out += [data[last : m.start()], escape_for(context, plain, "utf-8"), m.group()[n:]]
        last = m.end()
    return b"".join(out) + data[last:]


TOK = word("Hello") + " " + det("Alice Example")


def test_start_condition_glued_tokens_stay_even_when_cached():
    r = Revealer(RING)
    body = f'{{"a": "{TOK}"}}'.encode()
    assert json.loads(r.scan(body, "json")[0]) == {"a": "Hello Alice Example"}  # now cached
    glued = f"x{TOK} 9{TOK}".encode()  # each word token glued to a letter or digit, each det after a space
    new, stats = r.scan(glued, "text")
    assert new == f"x{word('Hello')} Alice Example 9{word('Hello')} Alice Example".encode()
    assert new == reference(glued, "text") and stats.revealed == 2


def test_tokens_after_escapes_and_at_the_start():
    t = det("Bob")
    for text, plain in ((f"{t} end", "Bob end"), (f"a\\n{t}", "a\\nBob"), (f"\\u001f{t}", "\\u001fBob"),
                        (f"%0A{t}", "%0ABob"), (f"\\\\{t}", "\\\\Bob")):
        new, stats = Revealer(RING).scan(text.encode(), "text")
        assert (new, stats.revealed) == (plain.encode(), 1), text
    assert Revealer(RING).scan(f"\\x{t}".encode(), "text")[0] is None  # "x" is not an escape ending


def test_stats_are_the_same_cold_and_warm():
    t = aead("secret")
    trunc = det("truncated value")[:-4]
    tampered = det("tampered")[:-3] + "aaa"
    body = f"{TOK} {t} {trunc}. {tampered} qxawor {TOK}".encode()
    r = Revealer(RING)
    first = r.scan(body, "text")
    second = r.scan(body, "text")
    for new, stats in (first, second):
        assert new == reference(body, "text")
        assert (stats.revealed, stats.truncated, stats.invalid) == (5, 1, 1)
        assert dict(stats.by_scheme) == {"words": 2, "deterministic": 2, "aead": 1}


def test_ring_change_drops_every_cache():
    r = Revealer(RING)
    t = det("Carol")
    assert r.scan(t.encode(), "text")[0] == b"Carol"
    r.set_ring(StaticKeyRing([make_key("abc", "test", seed=9)]))  # same kid, another key: no longer valid
    new, stats = r.scan(t.encode(), "text")
    assert new is None and stats.invalid == 1


PIECES = st.sampled_from([word("Hello world"), det("Dana"), aead("x"), det("Eve")[:-2], "qxdnope", "QXW", "",
                          det("Fay").upper(), word("Upper case").upper(),
                          " ", ". ", "! ", ", ", "a", "9", "\\n", "\\u00e9", "%0a", '"', "<", "\n", "qx",
                          "Qx", "é"])


IMPLS = [(reveal.split_segments_python, reveal.substitute_python, reveal.SegmentTablePython)]
if reveal.split_segments is not reveal.split_segments_python:  # the C module, where the install built it
    IMPLS.append((reveal.split_segments, reveal.substitute, reveal.SegmentTable))


@given(st.lists(PIECES, max_size=12), st.sampled_from(["json", "html", "text"]), st.sampled_from(IMPLS))
@settings(max_examples=600, deadline=None)
def test_property_scan_equals_the_grammar(pieces, context, impl):
    body = "".join(pieces).encode()
    r = Revealer(RING)
    seen = []
    split, substitute, table = impl
    with mock.patch.object(reveal, "split_segments", split), \
            mock.patch.object(reveal, "substitute", substitute), \
            mock.patch.object(reveal, "SegmentTable", table):
        for _ in range(3):  # cold, then warm (token caches), then warm (segment cache)
            new, stats = r.scan(body, context)
            assert (new if new is not None else body) == reference(body, context)
            seen.append((stats.revealed, stats.truncated, stats.invalid, dict(stats.by_scheme)))
    assert seen[0] == seen[1] == seen[2]


def _c_module():
    return pytest.importorskip("cloakgate.core._segments", reason="the C module was not built here")


# candidate heads in every case, escapes (whole, cut short, not hex), letters, digits, the end bytes
SPLIT_BYTES = st.lists(st.sampled_from([
    b"qxd", b"QXw", b"qXe", b"Qxa", b"qxb", b"qx", b"q", b"Q", b"x", b"d", b"\\n", b"\\q", b"\\u00e9",
    b"\\u0g9", b"\\u0", b"%0a", b"%0z", b"%z", b"%", b"abc", b"Z", b"9", b" ", b'"', b"<", b"\n", b"\xc3\xa9",
]), max_size=24)


@given(SPLIT_BYTES, st.sampled_from(sorted(set(reveal.SEGMENT_END.values()))))
@settings(max_examples=3000, deadline=None)
def test_the_c_split_equals_the_python_split(pieces, end):
    c_split = _c_module().split
    data = b"".join(pieces)
    assert c_split(data, end) == reveal.split_segments_python(data, end)


def test_the_c_split_refuses_what_is_not_bytes_and_one_byte():
    c_split = _c_module().split
    for args in ((bytearray(b"qxd"), 34), ("qxd", 34), (b"qxd",), (b"qxd", "x")):
        with pytest.raises(TypeError):
            c_split(*args)
    for end in (-1, 256, 2**70):
        with pytest.raises((ValueError, OverflowError)):
            c_split(b"qxd", end)
    assert c_split(b"", 34) == [b""]
    assert c_split(b'a "qxdzz" qxa', 34) == [b'a "', b"qxdzz", b'" ', b"qxa", b""]


COUNTS = st.one_of(st.integers(0, 2**62), st.integers(2**61, 2**64 + 5), st.integers(0, 2**200))


@given(SPLIT_BYTES, st.sampled_from(sorted(set(reveal.SEGMENT_END.values()))), st.booleans(), st.data())
@settings(max_examples=2000, deadline=None)
def test_the_c_substitute_equals_the_python_one(pieces, end, complete, data):
    """Tables holding every segment (the hot path: same bytes and the same sum of counts, also past
    64 bits) or not every one (None: a segment missing from the table or revealed to empty bytes)."""
    c = _c_module()
    body = b"".join(pieces)
    c_table, py_table = c.Table(), reveal.SegmentTablePython()
    kinds = ["hit"] if complete else ["hit", "hit", "miss", "empty"]
    for segment in reveal.split_segments_python(body, end)[1::2]:
        kind = data.draw(st.sampled_from(kinds))
        if kind != "miss":
            value = b"" if kind == "empty" else data.draw(st.binary(min_size=1, max_size=6))
            counts = data.draw(COUNTS)
            c_table.put(segment, value, counts)
            py_table.put(segment, value, counts)
    got = c.substitute(body, end, c_table)
    assert got == reveal.substitute_python(body, end, py_table)
    if complete:
        assert got is not None


def test_the_c_substitute_on_many_segments_and_bad_arguments():
    c = _c_module()
    segments = [b"qxd%03d" % i for i in range(300)]  # more than the C function's first array holds
    body = b"\n".join(segments)
    table = c.Table()
    for i, segment in enumerate(segments):
        table.put(segment, b"v%d" % i, 2**62 - 1)
    new, total = c.substitute(body, 10, table)
    assert new == b"\n".join(b"v%d" % i for i in range(300)) and total == 300 * (2**62 - 1)
    assert c.substitute(b"no segment", 10, table) == (b"no segment", 0)
    for args in ((body, 10), (bytearray(body), 10, table), (body, 10, {}),
                 (body, 10, reveal.SegmentTablePython()), (body, 10, table, table)):
        with pytest.raises(TypeError):
            c.substitute(*args)
    with pytest.raises(ValueError):
        c.substitute(body, 300, table)


@given(st.lists(st.tuples(st.binary(max_size=40), st.binary(max_size=8), COUNTS), max_size=300),
       st.lists(st.binary(max_size=40), max_size=20))
@settings(max_examples=300, deadline=None)
def test_the_c_table_behaves_as_the_python_one(puts, probes):
    """Put (new segments, and again: the last value wins), get, len, clear: the same as a dict of
    pairs, through the table's growth (64 slots at first, at most half of them used)."""
    c = _c_module()
    table, ref = c.Table(), reveal.SegmentTablePython()
    for segment, value, counts in puts:
        table.put(segment, value, counts)
        ref.put(segment, value, counts)
    assert len(table) == len(ref)
    for segment in [p[0] for p in puts] + probes:
        assert table.get(segment) == ref.get(segment)
    table.clear()
    assert len(table) == 0 and all(table.get(p[0]) is None for p in puts)
    table.put(b"again", b"v", 1)
    assert table.get(b"again") == (b"v", 1) and len(table) == 1


def test_the_c_table_refuses_what_it_cannot_hold():
    table = _c_module().Table()
    for args in ((b"s", b"v"), ("s", b"v", 1), (b"s", "v", 1), (b"s", bytearray(b"v"), 1), (b"s", b"v", 1.0)):
        with pytest.raises(TypeError):
            table.put(*args)
    for counts in (-1, -(2**70)):
        with pytest.raises(ValueError):
            table.put(b"s", b"v", counts)
    with pytest.raises(TypeError):
        table.get("s")
    with pytest.raises(TypeError):
        _c_module().Table(64)
    assert len(table) == 0 and table.get(b"s") is None


# SipHash-2-4 of the bytes 00 01 02 ... (n - 1) for n = 0 .. 15 under the key 00 01 ... 0f: the reference
# vectors of the SipHash paper (Aumasson and Bernstein, 2012), every tail length, one and two blocks.
SIPHASH24 = [
    0x726FDB47DD0E0E31, 0x74F839C593DC67FD, 0x0D6C8009D9A94F5A, 0x85676696D7FB7E2D,
    0xCF2794E0277187B7, 0x18765564CD99A68D, 0xCBC9466E58FEE3CE, 0xAB0200F58B01D137,
    0x93F5F5799A932462, 0x9E0082DF0BA9E4B0, 0x7A5DBBC594DDB9F3, 0xF4B32F46226BADA7,
    0x751E8FBC860EE5FB, 0x14EA5627C0843D90, 0xF723CA908E7AF2EE, 0xA129CA6149BE45E5,
]


def test_the_table_hash_is_siphash():
    siphash = _c_module().siphash
    key = bytes(range(16))
    assert [siphash(key, bytes(range(n)), 2, 4) for n in range(16)] == SIPHASH24
    assert siphash(key, b"", 1, 3) != SIPHASH24[0]  # the table's SipHash-1-3: the rounds count
    for args in ((key[:15], b"", 2, 4), (key, "x", 2, 4), (key, b"", 2)):
        with pytest.raises(TypeError):
            siphash(*args)
    with pytest.raises(ValueError):
        siphash(key, b"", 0, 4)


def test_a_cached_segment_glued_to_a_word_keeps_its_first_candidate():
    r = Revealer(RING)
    segment = f"{word('Quarterly report')}. {det('Dana')}"
    # cached whole now
    assert r.scan(f"<p>{segment}</p>".encode(), "html")[0] == b"<p>Quarterly report. Dana</p>"
    new, stats = r.scan(f"<p>x{segment}</p>".encode(), "html")
    assert new == reference(f"<p>x{segment}</p>".encode(), "html") and stats.revealed == 2
    assert new.startswith(b"<p>x" + word("Quarterly").encode() + b" report. Dana")
    # the cache unharmed
    assert r.scan(f"<p>{segment}</p>".encode(), "html")[0] == b"<p>Quarterly report. Dana</p>"


def test_email_tokens_in_segments_take_their_domain_every_time():
    e = schemes.Email(domain="p.example.com")
    long_addr = e.protect("zaphod.canary.beeblebrox@heartofgold.example", KEY, RING, os.urandom)
    short = e.protect("Jane.Doe@Example.com", KEY, RING, os.urandom)
    body = f"{det('Jane Doe')} {short}, {word('and')} {long_addr}. {det('Zaphod')} {short}".encode()
    r = Revealer(RING)
    for _ in range(3):
        new, stats = r.scan(body, "text")
        assert new == b"Jane Doe jane.doe@example.com, and zaphod.canary.beeblebrox@heartofgold.example. Zaphod jane.doe@example.com"
        assert dict(stats.by_scheme) == {"deterministic": 2, "words": 1, "email": 3} and stats.revealed == 6


def test_segment_cache_stays_within_its_byte_budget():
    r = Revealer(RING, segment_cache_bytes=4096)
    for i in range(60):
        body = f'{{"subject": "{word(f"Subject number {i} of many")}"}}'.encode()
        assert json.loads(r.scan(body, "json")[0]) == {"subject": f"Subject number {i} of many"}
        assert r._segment_bytes <= 4096  # the bound holds however many distinct segments pass


def test_tokens_a_saas_upper_cased_are_found_beside_lower_case_ones():
    t = det("Bob")
    for body, n in ((t.upper(), 1), (f"{t} / {t.upper()}", 2), (f"{t.upper()} {t[:2].upper()}{t[2:]}", 2)):
        new, stats = Revealer(RING).scan(body.encode(), "text")
        assert new == reference(body.encode(), "text") and b"qx" not in new.lower(), body
        assert stats.revealed == n and new.count(b"Bob") == n


def test_an_upper_case_token_after_many_qs_is_found():
    # a body with a few "Q"s (token letters carry case) is searched one by one, with many by the regex
    t = det("Bob")
    for qs in (0, 5, 200):
        body = ("Q " * qs + t.upper() + " Q" + " " * 4096).encode()
        new, stats = Revealer(RING).scan(body, "text")
        assert stats.revealed == 1 and new.startswith(b"Q " * qs + b"Bob Q "), qs


@given(st.text(alphabet="QXxq ", max_size=80), st.sampled_from([0, 3000]))
def test_upper_q_check_agrees_with_its_regex(text, pad):
    from cloakgate.core.reveal import _UPPER_Q, _has_upper_q

    data = text.encode() + b" " * pad  # padded: a few "Q"s one by one before the regex takes over
    assert _has_upper_q(data) == (_UPPER_Q.search(data) is not None)


def test_stats_add_sums_counts_per_scheme():
    from cloakgate.core.reveal import RevealStats

    a = RevealStats(revealed=3, truncated=1, by_scheme={"words": 2, "aead": 1})
    a.add(RevealStats(revealed=2, invalid=1, by_scheme={"words": 1, "fpe": 1}))
    assert (a.revealed, a.truncated, a.invalid) == (5, 1, 1)
    assert a.by_scheme == {"words": 3, "aead": 1, "fpe": 1}


def test_packed_segment_counts_add_up_per_field():
    from cloakgate.core.reveal import _pack_counts, _unpack_counts

    segments = [(3, 0, 7, 1, 0, 2), (0, 5, 0, 0, 9, 0), (2**30, 0, 0, 0, 0, 2**30 - 1), (2**30 - 4,) * 6]
    assert _unpack_counts(sum(map(_pack_counts, segments))) == [sum(c) for c in zip(*segments)]  # no carry
    assert _unpack_counts(_pack_counts((2**31 - 1,) * 6)) == [2**31 - 1] * 6
    assert _pack_counts((2**30, 2**30, 0, 0, 0, 0)) < 2**62  # deterministic and words: sum()'s C fast path
