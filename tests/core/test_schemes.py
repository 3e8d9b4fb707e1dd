import os
import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cloakgate.core import schemes
from cloakgate.core.errors import FieldError, InvalidToken
from cloakgate.core.keyring import StaticKeyRing
from cloakgate.core.reveal import Revealer
from tests.conftest import make_key

KEY = make_key("abc", "test")
RING = StaticKeyRing([KEY])
OTHER = make_key("xyz", "other", seed=9)


def reveal_all(text: str, ring=RING) -> str:
    """Reveal every token in ``text`` the way a plain-text response is revealed."""
    new, stats = Revealer(ring).scan(text.encode("utf-8"), "text")
    assert stats.skipped == 0
    return text if new is None else new.decode("utf-8")


TAGGED = [schemes.Aead(), schemes.Deterministic(), schemes.Words(), schemes.Words(html=True)]


@pytest.mark.parametrize("scheme", TAGGED, ids=lambda s: s.name)
@given(value=st.text(min_size=1))
@settings(max_examples=60)
def test_round_trip_arbitrary_unicode(scheme, value):
    protected = scheme.protect(value, KEY, RING, os.urandom)
    assert reveal_all(protected) == value


@pytest.mark.parametrize("scheme", [schemes.Aead(), schemes.Deterministic()], ids=lambda s: s.name)
@given(value=st.text(min_size=1))
@settings(max_examples=60)
def test_no_plaintext_survives_whole_value_schemes(scheme, value):
    protected = scheme.protect(value, KEY, RING, os.urandom)
    assume(len(value) >= 4)
    assert value not in protected and value.lower() not in protected.lower()


@given(st.lists(st.text(alphabet=st.characters(categories=["L", "Nd"]), min_size=4), min_size=1, max_size=5))
@settings(max_examples=60)
def test_no_word_survives_words_scheme(words):
    value = " ".join(words) + "!"
    protected = schemes.Words().protect(value, KEY, RING, os.urandom)
    assert protected.endswith("!")
    assert all(t.lower().startswith("qx") for t in protected[:-1].split(" "))
    assert reveal_all(protected) == value


@given(st.lists(st.sampled_from(["Anna", "anna", "Meyer", "ANNA", "x", "Ünal", "qx", "Anna Meyer"]), max_size=4),
       st.sampled_from([" ", ", ", "-", "\n"]))
@settings(max_examples=80)
def test_words_phrase_cache_gives_what_word_by_word_gives(words, sep):
    value = sep.join(words)
    fresh = make_key("wpc", "test", seed=len(value) + 40)  # a new key: an empty cache
    first = schemes.Words().protect(value, fresh, RING, os.urandom)  # phrase and words cached
    again = schemes.Words().protect(value, fresh, RING, os.urandom)  # served whole from the cache
    by_word = "".join(schemes.Words().word(p, fresh, RING) if i % 2 else p
                      for i, p in enumerate(re.split(r"(\w+)", value)))
    assert first == again == by_word


def test_words_are_deterministic_and_case_folded_for_search():
    w = schemes.Words()
    a = w.protect("Meet Jane", KEY, RING, os.urandom)
    b = w.protect("meet JANE", KEY, RING, os.urandom)
    assert a != b  # the case rides on the token's letters...
    assert a.lower() == b.lower()  # ...so a case-insensitive search engine sees the same words
    assert reveal_all(a) == "Meet Jane" and reveal_all(b) == "meet JANE"
    assert all(t.isalnum() for t in a.split(" "))


def test_words_html_keeps_markup_and_entities():
    html = '<div class="x"><style>p {color: red}</style><p>Hello &amp; bye</p><!-- note --></div>'
    out = schemes.Words(html=True).protect(html, KEY, RING, os.urandom)
    assert '<div class="x">' in out and "<style>p {color: red}</style>" in out and "&amp;" in out
    assert "Hello" not in out and "bye" not in out
    assert reveal_all(out) == html


def test_aead_is_randomized_deterministic_is_not():
    assert schemes.Aead().protect("x", KEY, RING, os.urandom) != schemes.Aead().protect("x", KEY, RING, os.urandom)
    d = schemes.Deterministic()
    assert d.protect("x", KEY, RING, os.urandom) == d.protect("x", KEY, RING, os.urandom)


def test_protection_is_idempotent_for_replays():
    for s in TAGGED:
        once = s.protect("Jane Doe", KEY, RING, os.urandom)
        assert s.protect(once, KEY, RING, os.urandom) == once


def test_tokens_are_bound_to_their_pack():
    tok = schemes.Deterministic().protect("Jane", KEY, RING, os.urandom)
    # the same key id and material, claimed by another pack: associated data differs
    forged = StaticKeyRing([type(KEY)("abc", "other", 1, bytes([1]) * 32)])
    with pytest.raises(InvalidToken):
        schemes.reveal_token(tok, forged)


@pytest.mark.parametrize("scheme", TAGGED, ids=lambda s: s.name)
def test_tampered_and_foreign_tokens_fail(scheme):
    tok = scheme.protect("Jane", KEY, RING, os.urandom).split()[0]
    i = len(tok) - 3
    flipped = tok[:i] + ("b" if tok[i] != "b" else "c") + tok[i + 1 :]
    with pytest.raises(InvalidToken):
        schemes.reveal_token(flipped, RING)
    with pytest.raises(InvalidToken):
        schemes.reveal_token(tok, StaticKeyRing([OTHER]))


def test_email_is_valid_address_lowercase_and_deterministic():
    e = schemes.Email(domain="protected.example.com")
    out = e.protect("Jane.Doe@Example.com", KEY, RING, os.urandom)
    local, _, dom = out.partition("@")
    assert dom == "protected.example.com" and local == local.lower() and local.isalnum() and len(local) <= 64
    assert e.protect("Jane.Doe@Example.com", KEY, RING, os.urandom) == out
    assert reveal_all(f"to: {out}.") == "to: jane.doe@example.com."
    assert e.protect("jane.doe@example.com", KEY, RING, os.urandom) == out  # equality search in any case


@pytest.mark.parametrize("bad", ["jane", "@example.com", "jane@", "ja ne@example.com"])
def test_email_refuses_non_addresses(bad):
    with pytest.raises(FieldError) as e:
        schemes.Email(domain="p.example.com").protect(bad, KEY, RING, os.urandom)
    assert e.value.code == "cloakgate.field.not_email"


def test_long_addresses_continue_in_a_domain_label():
    e = schemes.Email(domain="p.example.com")
    out = e.protect("zaphod.canary.beeblebrox@heartofgold.example", KEY, RING, os.urandom)
    local, _, dom = out.partition("@")
    assert len(local) == 64 and dom.endswith(".p.example.com") and len(dom.split(".")[0]) <= 63
    assert e.protect(out, KEY, RING, os.urandom) == out
    assert reveal_all(f"<{out}>") == "<zaphod.canary.beeblebrox@heartofgold.example>"


def test_email_too_long_is_refused():
    with pytest.raises(FieldError) as e:
        schemes.Email(domain="p.example.com").protect("ÄÖÜ" * 20 + "@example.com", KEY, RING, os.urandom)
    assert e.value.code == "cloakgate.field.too_long"


def test_mask_keeps_last_four():
    assert schemes.Mask().protect("4111 1111 1111 1234", KEY, RING, os.urandom) == "**** **** **** 1234"


def test_datakey_refuses_print_and_pickle():
    import pickle

    assert "01010101" not in repr(KEY) and "material" not in repr(KEY)
    with pytest.raises(TypeError):
        pickle.dumps(KEY)


def _html_words_text_by_text(value: str) -> str:
    """What Words(html=True) writes: every text between markup protected on its own (reference)."""
    w = schemes.Words()
    out = []
    for i, chunk in enumerate(schemes._HTML_SPLIT.split(value)):
        out.append(chunk if i % 2 else "".join(w.word(p, KEY, RING) if j % 2 else p
                                                for j, p in enumerate(schemes._WORD_SPLIT.split(chunk))))
    return "".join(out)


_html_piece = st.sampled_from(["<p>", "</p>", "<br/>", '<a href="x y">', "&amp;", "&#39;", "<!-- c d -->",
                               "<style>p {a: b}</style>", "\x00", " ", "\n"])


@given(st.lists(st.one_of(_html_piece, st.text(max_size=12)), max_size=12))
@settings(max_examples=300, deadline=None)
def test_words_html_in_one_pass_equals_text_by_text(pieces):
    value = "".join(pieces)
    assert schemes.Words(html=True).protect(value, KEY, RING, os.urandom) == _html_words_text_by_text(value)
