"""FF1 and FF3-1 (NIST SP 800-38G Rev. 1): the standard's vectors, a spec-literal reference, properties.

Known answers come from tests/core/vectors/sp800_38g.json; every vector there names its source.
FF3-1 has no vectors published by NIST in a document; the ones used are NIST's ACVP server's own
(usnistgov/ACVP-Server, vsId 42), the ACVP draft vectors mysto/python-fpe publishes, and the
three FF3 samples whose all-zero tweak makes FF3 and FF3-1 coincide.

The reference implementations below follow Algorithms 7-10 line by line (numeral lists, NUM and
STR as loops, the PRF as AES-CBC with a zero IV) and share no code with cloakgate.core.fpe. They are
checked against the same vectors, then used to check the optimised code on inputs the vectors do
not reach (long strings, large radixes, multi-block PRF input and output).
"""

from __future__ import annotations

import functools
import json
import pickle
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cloakgate.core.fpe import ALNUM_LOWER, DIGITS, FF1, FF3_1, FPEDomainError

VECTORS = json.loads((Path(__file__).parent / "vectors" / "sp800_38g.json").read_text("utf-8"))
FF1_VECTORS = VECTORS["ff1"]
FF3_1_VECTORS = VECTORS["ff3_1"]

KEY = bytes(range(32))
FAST = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def _ids(vectors: list[dict]) -> list[str]:
    return [v["id"] for v in vectors]


def _cipher(kind: str, v: dict) -> FF1 | FF3_1:
    cls = FF1 if kind == "ff1" else FF3_1
    return cls(bytes.fromhex(v["key"]), v["radix"], v["alphabet"])


@functools.cache
def _alphabet(radix: int) -> str:
    """The default alphabet up to radix 36, else code points from U+10000 on (no surrogates)."""
    return ALNUM_LOWER[:radix] if radix <= 36 else "".join(chr(0x10000 + i) for i in range(radix))


# --- spec-literal references --------------------------------------------------------------------


def _num(x: list[int], radix: int) -> int:
    n = 0
    for d in x:
        n = n * radix + d
    return n


def _str(n: int, m: int, radix: int) -> list[int]:
    out = [0] * m
    for i in range(m - 1, -1, -1):
        n, out[i] = divmod(n, radix)
    return out


def _aes_block(key: bytes, block: bytes) -> bytes:
    return Cipher(algorithms.AES(key), modes.ECB()).encryptor().update(block)


def ref_ff1(key: bytes, radix: int, x: list[int], tweak: bytes, decrypt: bool = False) -> list[int]:
    """SP 800-38G Rev. 1, Algorithm 7 (FF1.Encrypt) and Algorithm 8 (FF1.Decrypt)."""
    n, t = len(x), len(tweak)
    u = n // 2
    v = n - u
    a, b_half = x[:u], x[u:]
    b = -(-((radix**v - 1).bit_length()) // 8)  # ceil(ceil(v*log2(radix))/8): 2**k >= radix**v
    d = 4 * -(-b // 4) + 4
    p = bytes([1, 2, 1]) + radix.to_bytes(3, "big") + bytes([10, u % 256])
    p += n.to_bytes(4, "big") + t.to_bytes(4, "big")
    for i in range(9, -1, -1) if decrypt else range(10):
        src = a if decrypt else b_half
        q = tweak + bytes((-t - b - 1) % 16) + bytes([i]) + _num(src, radix).to_bytes(b, "big")
        r = Cipher(algorithms.AES(key), modes.CBC(bytes(16))).encryptor().update(p + q)[-16:]
        s = r
        j = 1
        while len(s) < d:
            s += _aes_block(key, bytes(x ^ y for x, y in zip(r, j.to_bytes(16, "big"))))
            j += 1
        y = int.from_bytes(s[:d], "big")
        m = u if i % 2 == 0 else v
        if decrypt:
            c = (_num(b_half, radix) - y) % radix**m
            b_half, a = a, _str(c, m, radix)
        else:
            c = (_num(a, radix) + y) % radix**m
            a, b_half = b_half, _str(c, m, radix)
    return a + b_half


def ref_ff3_1(key: bytes, radix: int, x: list[int], tweak: bytes, decrypt: bool = False) -> list[int]:
    """SP 800-38G Rev. 1 (initial public draft), Algorithm 9 (FF3-1.Encrypt) and 10 (Decrypt)."""
    n = len(x)
    u = -(-n // 2)
    v = n - u
    a, b_half = x[:u], x[u:]
    bits = int.from_bytes(tweak, "big")  # T[0..55], T[0] most significant
    t_left = (bits >> 28) << 4  # T[0..27] || 0^4
    t_right = ((bits & 0xFFFFFF) << 8) | (((bits >> 24) & 0xF) << 4)  # T[32..55] || T[28..31] || 0^4
    k = key[::-1]
    for i in range(7, -1, -1) if decrypt else range(8):
        m, w = (u, t_right) if i % 2 == 0 else (v, t_left)
        src = a if decrypt else b_half
        p = (w ^ i).to_bytes(4, "big") + _num(src[::-1], radix).to_bytes(12, "big")
        s = _aes_block(k, p[::-1])[::-1]
        y = int.from_bytes(s, "big")
        if decrypt:
            c = (_num(b_half[::-1], radix) - y) % radix**m
            b_half, a = a, _str(c, m, radix)[::-1]
        else:
            c = (_num(a[::-1], radix) + y) % radix**m
            a, b_half = b_half, _str(c, m, radix)[::-1]
    return a + b_half


def _as_numerals(s: str, alphabet: str) -> list[int]:
    return [alphabet.index(c) for c in s]


def _as_string(x: list[int], alphabet: str) -> str:
    return "".join(alphabet[d] for d in x)


# --- the standard's vectors ---------------------------------------------------------------------


def test_vector_file_names_a_known_source_for_every_vector():
    sources = VECTORS["sources"]
    ids = [v["id"] for v in FF1_VECTORS + FF3_1_VECTORS]
    assert len(ids) == len(set(ids))
    for v in FF1_VECTORS + FF3_1_VECTORS:
        assert v["source"].split(":")[0] in sources, v["id"]
        assert v["direction"] in ("encrypt", "decrypt")
        assert len(v["alphabet"]) == v["radix"]
    assert sum(v["source"].startswith("nist-ff1-samples") for v in FF1_VECTORS) == 9


@pytest.mark.parametrize("v", FF1_VECTORS, ids=_ids(FF1_VECTORS))
def test_ff1_vectors(v):
    c, tweak = _cipher("ff1", v), bytes.fromhex(v["tweak"])
    assert c.encrypt(v["plaintext"], tweak) == v["ciphertext"]
    assert c.decrypt(v["ciphertext"], tweak) == v["plaintext"]


@pytest.mark.parametrize("v", FF3_1_VECTORS, ids=_ids(FF3_1_VECTORS))
def test_ff3_1_vectors(v):
    c, tweak = _cipher("ff3_1", v), bytes.fromhex(v["tweak"])
    assert c.encrypt(v["plaintext"], tweak) == v["ciphertext"]
    assert c.decrypt(v["ciphertext"], tweak) == v["plaintext"]


@pytest.mark.parametrize("v", FF1_VECTORS, ids=_ids(FF1_VECTORS))
def test_ff1_reference_matches_the_vectors(v):
    key, tweak, alphabet = bytes.fromhex(v["key"]), bytes.fromhex(v["tweak"]), v["alphabet"]
    pt, ct = _as_numerals(v["plaintext"], alphabet), _as_numerals(v["ciphertext"], alphabet)
    assert ref_ff1(key, v["radix"], pt, tweak) == ct
    assert ref_ff1(key, v["radix"], ct, tweak, decrypt=True) == pt


@pytest.mark.parametrize("v", FF3_1_VECTORS, ids=_ids(FF3_1_VECTORS))
def test_ff3_1_reference_matches_the_vectors(v):
    key, tweak, alphabet = bytes.fromhex(v["key"]), bytes.fromhex(v["tweak"]), v["alphabet"]
    pt, ct = _as_numerals(v["plaintext"], alphabet), _as_numerals(v["ciphertext"], alphabet)
    assert ref_ff3_1(key, v["radix"], pt, tweak) == ct
    assert ref_ff3_1(key, v["radix"], ct, tweak, decrypt=True) == pt


def test_ff1_alphabet_is_a_renaming_of_the_numerals():
    # Sample 1 over "abcdefghij" instead of the digits: the same numerals, renamed.
    v = FF1_VECTORS[0]
    c = FF1(bytes.fromhex(v["key"]), 10, "abcdefghij")
    rename = str.maketrans(DIGITS, "abcdefghij")
    assert c.encrypt(v["plaintext"].translate(rename)) == v["ciphertext"].translate(rename)


# --- the optimised code against the references, where the vectors do not reach ----------------

RADIXES = [2, 3, 7, 10, 16, 26, 36, 37, 64, 100, 255, 256, 1000, 65536]


@st.composite
def ff1_case(draw, max_len: int = 80):
    radix = draw(st.sampled_from(RADIXES))
    min_len = FF1(KEY, radix, _alphabet(radix)).min_len
    x = draw(st.lists(st.integers(0, radix - 1), min_size=min_len, max_size=max(min_len, max_len)))
    return radix, x, draw(st.binary(max_size=40))


@st.composite
def ff3_1_case(draw):
    radix = draw(st.sampled_from(RADIXES))
    c = FF3_1(KEY[:16], radix, _alphabet(radix))
    x = draw(st.lists(st.integers(0, radix - 1), min_size=c.min_len, max_size=c.max_len))
    return radix, x, draw(st.binary(min_size=7, max_size=7))


@given(ff1_case())
@FAST
def test_ff1_matches_reference(case):
    radix, x, tweak = case
    alphabet = _alphabet(radix)
    c = FF1(KEY, radix, alphabet)
    y = c.encrypt(_as_string(x, alphabet), tweak)
    assert _as_numerals(y, alphabet) == ref_ff1(KEY, radix, x, tweak)
    assert c.decrypt(y, tweak) == _as_string(x, alphabet)


@given(ff3_1_case())
@FAST
def test_ff3_1_matches_reference(case):
    radix, x, tweak = case
    alphabet = _alphabet(radix)
    c = FF3_1(KEY[:16], radix, alphabet)
    y = c.encrypt(_as_string(x, alphabet), tweak)
    assert _as_numerals(y, alphabet) == ref_ff3_1(KEY[:16], radix, x, tweak)
    assert c.decrypt(y, tweak) == _as_string(x, alphabet)


@pytest.mark.parametrize(
    "radix,length,tweak_len",
    [
        (10, 59, 0),  # first radix-10 length where d > 16: S takes a second AES block
        (10, 601, 3),  # past the int()/str() fast path: chunked NUM and STR
        (10, 1500, 40),  # many CBC-MAC blocks per round, S of many blocks
        (36, 700, 17),
        (16, 2000, 0),  # power of two: int()/format() stay exact at any length
        (26, 650, 5),  # radix below 36 with the default alphabet, chunked
        (65536, 300, 200),
    ],
)
def test_ff1_long_inputs_match_reference(radix, length, tweak_len):
    alphabet = _alphabet(radix)
    x = [(i * 7919 + 13) % radix for i in range(length)]
    tweak = bytes(range(tweak_len))
    c = FF1(KEY[:24], radix, alphabet)
    y = c.encrypt(_as_string(x, alphabet), tweak)
    assert _as_numerals(y, alphabet) == ref_ff1(KEY[:24], radix, x, tweak)
    assert c.decrypt(y, tweak) == _as_string(x, alphabet)


def test_ff1_long_inputs_do_not_depend_on_the_int_str_digit_limit():
    # int(s, 10) and str(n) refuse more than sys.get_int_max_str_digits() digits (4300 by default,
    # as low as 640 if an application says so); the chunked NUM/STR must take over before that.
    x = "".join(str((i * 7) % 10) for i in range(5000))
    c = FF1(KEY, 10, max_len=6000)
    y = c.encrypt(x, b"long")
    assert y == _as_string(ref_ff1(KEY, 10, _as_numerals(x, DIGITS), b"long"), DIGITS)
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)
    try:
        assert c.decrypt(y, b"long") == x
        z = FF1(KEY, 36).encrypt(ALNUM_LOWER * 20, b"")
        assert FF1(KEY, 36).decrypt(z, b"") == ALNUM_LOWER * 20
    finally:
        sys.set_int_max_str_digits(old)


def test_ff1_custom_alphabet_long_input_matches_reference():
    alphabet = "QWERTYUIOP"  # radix 10, translated onto the digits before int()
    x = [(i * 31 + 5) % 10 for i in range(900)]
    c = FF1(KEY, 10, alphabet)
    y = c.encrypt(_as_string(x, alphabet), b"t")
    assert _as_numerals(y, alphabet) == ref_ff1(KEY, 10, x, b"t")


# --- properties -----------------------------------------------------------------------------------


@st.composite
def alphabets(draw, min_radix: int = 2, max_radix: int = 80):
    chars = st.characters(codec="utf-8", exclude_categories=["Cs"])
    return "".join(draw(st.lists(chars, min_size=min_radix, max_size=max_radix, unique=True)))


@given(st.data())
@FAST
def test_ff1_round_trip_any_alphabet(data):
    alphabet = data.draw(alphabets())
    c = FF1(KEY[:16], len(alphabet), alphabet)
    x = data.draw(st.text(alphabet=alphabet, min_size=c.min_len, max_size=max(c.min_len, 64)))
    tweak = data.draw(st.binary(max_size=64))
    y = c.encrypt(x, tweak)
    assert len(y) == len(x) and set(y) <= set(alphabet)
    assert c.decrypt(y, tweak) == x
    assert c.encrypt(c.decrypt(x, tweak), tweak) == x


@given(st.data())
@FAST
def test_ff3_1_round_trip_any_alphabet(data):
    alphabet = data.draw(alphabets())
    c = FF3_1(KEY, len(alphabet), alphabet)
    x = data.draw(st.text(alphabet=alphabet, min_size=c.min_len, max_size=c.max_len))
    tweak = data.draw(st.binary(min_size=7, max_size=7))
    y = c.encrypt(x, tweak)
    assert len(y) == len(x) and set(y) <= set(alphabet)
    assert c.decrypt(y, tweak) == x
    assert c.encrypt(c.decrypt(x, tweak), tweak) == x


@given(st.data())
@FAST
def test_an_alphabet_only_renames_numerals(data):
    radix = data.draw(st.integers(2, 36))
    alphabet = data.draw(alphabets(radix, radix))
    default = ALNUM_LOWER[:radix]
    to_alpha = str.maketrans(default, alphabet)
    for c, d, tweak in (
        (FF1(KEY, radix), FF1(KEY, radix, alphabet), b"tw"),
        (FF3_1(KEY[:16], radix), FF3_1(KEY[:16], radix, alphabet), b"1234567"),
    ):
        x = data.draw(st.text(alphabet=default, min_size=c.min_len, max_size=min(c.max_len, 40)))
        assert d.encrypt(x.translate(to_alpha), tweak) == c.encrypt(x, tweak).translate(to_alpha)


@given(st.text(alphabet=DIGITS, min_size=12, max_size=40), st.binary(max_size=24), st.binary(max_size=24))
@FAST
def test_ff1_tweaks_separate_and_no_plaintext_survives(x, t1, t2):
    # A domain of at least 10**12 values: a collision by chance has probability <= 1e-12.
    assume(t1 != t2)
    c = FF1(KEY, 10)
    y1, y2 = c.encrypt(x, t1), c.encrypt(x, t2)
    assert y1 != y2
    assert y1 != x and y2 != x


@given(st.text(alphabet=ALNUM_LOWER, min_size=8, max_size=36), st.binary(min_size=7, max_size=7),
       st.binary(min_size=7, max_size=7))
@FAST
def test_ff3_1_tweaks_separate_and_no_plaintext_survives(x, t1, t2):
    assume(t1 != t2)  # 36**8 > 2.8e12 values
    c = FF3_1(KEY[:16], 36)
    y1, y2 = c.encrypt(x, t1), c.encrypt(x, t2)
    assert y1 != y2
    assert y1 != x and y2 != x


def test_every_tweak_bit_of_ff3_1_matters():
    # Each of the 56 bits lands in T_L or T_R (bits 28..31 move to T_R): flipping any changes the output.
    c, x, tweak = FF3_1(KEY[:16], 10), "1234567890123456", bytes(7)
    base = c.encrypt(x, tweak)
    for bit in range(56):
        flipped = (int.from_bytes(tweak, "big") ^ (1 << bit)).to_bytes(7, "big")
        assert c.encrypt(x, flipped) != base, bit


def test_bytes_like_tweaks_are_equivalent():
    c1, c3 = FF1(KEY, 10), FF3_1(KEY[:16], 10)
    x = "0123456789"
    assert c1.encrypt(x, bytearray(b"abc")) == c1.encrypt(x, memoryview(b"abc")) == c1.encrypt(x, b"abc")
    assert c3.encrypt("0123456789", bytearray(7)) == c3.encrypt("0123456789", bytes(7))


# --- the domain ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "radix,alphabet,ff1_min,ff3_1_max",
    [
        (2, None, 20, 192),
        (10, None, 6, 56),
        (26, "abcdefghijklmnopqrstuvwxyz", 5, 40),
        (36, None, 4, 36),
        (64, _alphabet(64), 4, 32),  # 64**16 == 2**96 exactly: maxlen must not lose the last step
        (1000, _alphabet(1000), 2, 18),
        (65536, _alphabet(65536), 2, 12),
    ],
)
def test_domain_bounds(radix, alphabet, ff1_min, ff3_1_max):
    f1, f3 = FF1(KEY, radix, alphabet), FF3_1(KEY[:16], radix, alphabet)
    assert f1.min_len == f3.min_len == ff1_min
    assert radix**ff1_min >= 1_000_000 > radix ** (ff1_min - 1) or ff1_min == 2
    assert f3.max_len == ff3_1_max
    a = f1.alphabet
    for c, tweak in ((f1, b""), (f3, bytes(7))):
        assert c.decrypt(c.encrypt(a[1] * c.min_len, tweak), tweak) == a[1] * c.min_len
        with pytest.raises(FPEDomainError) as e:
            c.encrypt(a[1] * (c.min_len - 1), tweak)
        assert e.value.code == "cloakgate.fpe.length"
    assert f3.decrypt(f3.encrypt(a[1] * f3.max_len, bytes(7)), bytes(7)) == a[1] * f3.max_len
    with pytest.raises(FPEDomainError) as e:
        f3.encrypt(a[1] * (f3.max_len + 1), bytes(7))
    assert e.value.code == "cloakgate.fpe.length"


def test_ff1_length_is_bounded():
    c = FF1(KEY, 10)
    assert c.max_len == 4096
    x = "7" * c.max_len
    assert c.decrypt(c.encrypt(x)) == x
    with pytest.raises(FPEDomainError) as e:
        c.encrypt(x + "7")
    assert e.value.code == "cloakgate.fpe.length"
    short = FF1(KEY, 10, max_len=8)
    with pytest.raises(FPEDomainError):
        short.encrypt("123456789")
    for bad in (5, 2**32 + 1, True):
        with pytest.raises(FPEDomainError):
            FF1(KEY, 10, max_len=bad)


SECRET = "8675309123"


@pytest.mark.parametrize(
    "make,x,tweak,code",
    [
        (lambda: FF1(KEY, 10), SECRET[:5], b"", "cloakgate.fpe.length"),
        (lambda: FF1(KEY, 10), SECRET[:9] + "x", b"", "cloakgate.fpe.alphabet"),
        (lambda: FF1(KEY, 10), SECRET[:9] + "\u0663", b"", "cloakgate.fpe.alphabet"),  # ARABIC-INDIC THREE
        (lambda: FF1(KEY, 36), SECRET[:9] + "A", b"", "cloakgate.fpe.alphabet"),  # case matters
        (lambda: FF1(KEY, 10, max_tweak_len=4), SECRET, b"12345", "cloakgate.fpe.tweak"),
        (lambda: FF3_1(KEY[:16], 10), SECRET[:5], bytes(7), "cloakgate.fpe.length"),
        (lambda: FF3_1(KEY[:16], 10), SECRET * 6, bytes(7), "cloakgate.fpe.length"),
        (lambda: FF3_1(KEY[:16], 10), SECRET[:9] + " ", bytes(7), "cloakgate.fpe.alphabet"),
        (lambda: FF3_1(KEY[:16], 10), SECRET, bytes(6), "cloakgate.fpe.tweak"),
        (lambda: FF3_1(KEY[:16], 10), SECRET, bytes(8), "cloakgate.fpe.tweak"),
    ],
    ids=[
        "ff1-short", "ff1-letter", "ff1-other-digit", "ff1-upper", "ff1-tweak", "ff3_1-short", "ff3_1-long",
        "ff3_1-space", "ff3_1-tweak6", "ff3_1-tweak8",
    ],
)
def test_domain_errors_carry_a_code_and_never_the_input(make, x, tweak, code):
    c = make()
    for op in (c.encrypt, c.decrypt):
        with pytest.raises(FPEDomainError) as e:
            op(x, tweak)
        assert e.value.code == code
        assert isinstance(e.value, ValueError)
        assert SECRET[:5] not in str(e.value) and x not in str(e.value) and x not in repr(e.value)


@given(st.data())
@FAST
def test_foreign_characters_and_short_inputs_are_refused(data):
    alphabet = data.draw(alphabets(10, 40))
    cls = data.draw(st.sampled_from([FF1, FF3_1]))
    c = cls(KEY[:16], len(alphabet), alphabet)
    tweak = bytes(7)
    x = data.draw(st.text(alphabet=alphabet, min_size=c.min_len, max_size=c.min_len + 10))
    chars = st.characters(codec="utf-8", exclude_categories=["Cs"])
    foreign = data.draw(chars.filter(lambda ch: ch not in alphabet))
    at = data.draw(st.integers(0, len(x) - 1))
    with pytest.raises(FPEDomainError) as e:
        c.encrypt(x[:at] + foreign + x[at + 1 :], tweak)
    assert e.value.code == "cloakgate.fpe.alphabet"
    with pytest.raises(FPEDomainError) as e:
        c.decrypt(x[: data.draw(st.integers(0, c.min_len - 1))], tweak)
    assert e.value.code == "cloakgate.fpe.length"


@pytest.mark.parametrize("cls", [FF1, FF3_1])
@pytest.mark.parametrize("key_len", [0, 8, 15, 17, 23, 31, 33, 64])
def test_wrong_key_length_is_refused(cls, key_len):
    with pytest.raises(FPEDomainError) as e:
        cls(bytes(key_len), 10)
    assert e.value.code == "cloakgate.fpe.key"


@pytest.mark.parametrize("cls", [FF1, FF3_1])
@pytest.mark.parametrize(
    "radix,alphabet,code",
    [
        (1, None, "cloakgate.fpe.radix"),
        (65537, None, "cloakgate.fpe.radix"),
        (10.0, None, "cloakgate.fpe.radix"),
        (37, None, "cloakgate.fpe.alphabet"),
        (10, "012345678", "cloakgate.fpe.alphabet"),
        (10, "0123456788", "cloakgate.fpe.alphabet"),
    ],
)
def test_bad_radix_or_alphabet_is_refused(cls, radix, alphabet, code):
    with pytest.raises(FPEDomainError) as e:
        cls(KEY[:16], radix, alphabet)
    assert e.value.code == code


def test_wrong_types_are_type_errors():
    c1, c3 = FF1(KEY, 10), FF3_1(KEY[:16], 10)
    with pytest.raises(TypeError):
        c1.encrypt(b"0123456789")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        c1.encrypt("0123456789", "tweak")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        c3.encrypt("0123456789", "1234567")  # type: ignore[arg-type]


@pytest.mark.parametrize("c", [FF1(KEY, 10), FF3_1(KEY[:16], 10)], ids=["ff1", "ff3_1"])
def test_ciphers_do_not_show_or_pickle_their_key(c):
    assert KEY[:16].hex() not in repr(c) and "key" not in repr(c).lower()
    with pytest.raises(TypeError):
        pickle.dumps(c)
