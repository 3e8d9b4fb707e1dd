"""FF1 and FF3-1 against the standard's own vectors, plus properties; AES-SIV against RFC 5297."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from hypothesis import given, settings
from hypothesis import strategies as st

from cloakgate.core.fpe import ALNUM_LOWER, DIGITS, FF1, FF3_1, FPEDomainError

VEC = Path(__file__).parent / "vectors"
FPE = json.loads((VEC / "fpe_vectors.json").read_text())
SIV = json.loads((VEC / "rfc5297_siv.json").read_text())


@pytest.mark.parametrize("v", FPE["ff1"]["vectors"], ids=lambda v: f"sample{v['sample']}")
def test_ff1_nist_samples(v):
    c = FF1(bytes.fromhex(v["key"]), v["radix"])
    tweak = bytes.fromhex(v["tweak"])
    assert c.encrypt(v["plaintext"], tweak) == v["ciphertext"]
    assert c.decrypt(v["ciphertext"], tweak) == v["plaintext"]


@pytest.mark.parametrize("v", FPE["ff3_1"]["vectors"], ids=lambda v: f"{len(v['key']) * 4}-{len(v['alphabet'])}-{v['plaintext'][:6]}")
def test_ff3_1_acvp_vectors(v):
    c = FF3_1(bytes.fromhex(v["key"]), len(v["alphabet"]), v["alphabet"])
    tweak = bytes.fromhex(v["tweak"])
    assert c.encrypt(v["plaintext"], tweak) == v["ciphertext"]
    assert c.decrypt(v["ciphertext"], tweak) == v["plaintext"]


KEY = bytes(range(32))


@given(st.text(alphabet=DIGITS, min_size=6, max_size=40), st.binary(max_size=20))
@settings(max_examples=60)
def test_ff1_round_trip_digits(x, tweak):
    c = FF1(KEY, 10)
    y = c.encrypt(x, tweak)
    assert len(y) == len(x) and set(y) <= set(DIGITS) and c.decrypt(y, tweak) == x


@given(st.text(alphabet=ALNUM_LOWER, min_size=4, max_size=30))
@settings(max_examples=60)
def test_ff1_and_ff3_1_round_trip_alnum(x):
    for c, t in ((FF1(KEY, 36), b"t"), (FF3_1(KEY[:16], 36), b"1234567")):
        y = c.encrypt(x, t)
        assert len(y) == len(x) and set(y) <= set(ALNUM_LOWER) and c.decrypt(y, t) == x


def test_tweak_changes_ciphertext():
    c = FF1(KEY, 10)
    assert c.encrypt("1234567890", b"a") != c.encrypt("1234567890", b"b")


@pytest.mark.parametrize(
    "make,x,tweak",
    [(lambda: FF1(KEY, 10), "12345", b""), (lambda: FF1(KEY, 10), "12345a", b""),
     (lambda: FF3_1(KEY[:16], 10), "123456", b"short"), (lambda: FF1(b"short", 10), "123456", b""),
     (lambda: FF3_1(KEY[:16], 10), "1" * 60, b"1234567")],
)
def test_domain_errors_do_not_quote_the_input(make, x, tweak):
    with pytest.raises(FPEDomainError) as e:
        make().encrypt(x, tweak)
    assert x not in str(e.value)


@pytest.mark.parametrize("v", SIV["vectors"], ids=lambda v: v["name"])
def test_aes_siv_rfc5297(v):
    siv = AESSIV(bytes.fromhex(v["key"]))
    ad = [bytes.fromhex(a) for a in v["ad"]]
    out = siv.encrypt(bytes.fromhex(v["plaintext"]), ad)
    assert out.hex() == v["output"]
    assert siv.decrypt(out, ad).hex() == v["plaintext"]
    for i in (0, 15, 16, len(out) - 1):  # the SIV and the ciphertext are both authenticated
        bad = bytearray(out)
        bad[i] ^= 1
        with pytest.raises(InvalidTag):
            siv.decrypt(bytes(bad), ad)
