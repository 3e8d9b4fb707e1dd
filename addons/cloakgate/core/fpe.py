"""Format-preserving encryption: FF1 and FF3-1 from NIST SP 800-38G Rev. 1, over AES.

A string is a sequence of numerals over an alphabet (default: the first ``radix`` characters of
0-9a-z); the ciphertext is a string of the same length over the same alphabet. Both ciphers are
deterministic tweakable permutations: equal (key, tweak, input) give equal output, and there is no
integrity at all (a changed ciphertext decrypts to another valid-looking value). Vary the tweak with
the context a value lives in.

Domain (Rev. 1): radix in [2, 2**16]; at least 1,000,000 possible values (radix ** minlen >= 10**6);
FF1 up to ``max_len`` numerals (the standard allows up to 2**32; we bound it, default 4096, so time
and space stay small), FF3-1 up to 2 * floor(log_radix(2**96)). FF3-1 takes exactly 56 tweak bits.
FF3-1 is here for interoperability: the second public draft of Rev. 1 (February 2025) drops it and
keeps FF1 only.

Every failure is an ``FPEDomainError`` (a ``ValueError``) with a stable ``code``; no message quotes
the input. An instance keeps one AES context and is not meant to be shared between threads.
"""

from __future__ import annotations

from typing import NoReturn

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

DIGITS = "0123456789"
ALNUM_LOWER = "0123456789abcdefghijklmnopqrstuvwxyz"
MIN_DOMAIN = 1_000_000
MAX_RADIX = 1 << 16
FF1_MAX_LEN = 4096

# int(s, radix) and format(n, "d") refuse more digits than sys.get_int_max_str_digits() (at least
# 640 when set at all) for bases that are not powers of two; longer strings go the chunked way.
_FAST_DIGITS = 600
_FORMATS = {2: "b", 8: "o", 10: "d", 16: "x"}


class FPEDomainError(ValueError):
    """The input, key, tweak or alphabet is outside the cipher's domain. Never quotes the input."""

    code: str = "cloakgate.fpe.domain"

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code


class _Alphabet:
    """Numerals <-> integers for one radix and alphabet (NUM_radix and STR^m_radix)."""

    __slots__ = ("radix", "chars", "min_len", "_index", "_charset", "_to_native", "_from_native",
                 "_fast_int", "_fmt", "_pow2", "_chunk", "_chunk_base")

    def __init__(self, radix: int, alphabet: str | None):
        if not _is_int(radix) or not 2 <= radix <= MAX_RADIX:
            raise FPEDomainError("radix must be in [2, 65536]", "cloakgate.fpe.radix")
        native = ALNUM_LOWER[:radix] if radix <= len(ALNUM_LOWER) else None
        if alphabet is None:
            if native is None:
                raise FPEDomainError("a radix above 36 needs an explicit alphabet", "cloakgate.fpe.alphabet")
            alphabet = native
        elif not isinstance(alphabet, str) or len(alphabet) != radix:
            raise FPEDomainError("the alphabet must be radix distinct characters", "cloakgate.fpe.alphabet")
        self._charset = frozenset(alphabet)
        if len(self._charset) != radix:
            raise FPEDomainError("the alphabet must be radix distinct characters", "cloakgate.fpe.alphabet")
        self.radix = radix
        self.chars = alphabet
        self._index: dict[str, int] | None = None  # built on first use by the chunked path
        self.min_len = 2
        while radix**self.min_len < MIN_DOMAIN:
            self.min_len += 1
        # int() reads 0-9a-z and format() writes them: map other alphabets of radix <= 36 onto those.
        same = alphabet == native
        self._to_native = None if same or native is None else str.maketrans(alphabet, native)
        self._from_native = None if same or native is None else str.maketrans(native, alphabet)
        self._fast_int = native is not None
        self._fmt = _FORMATS.get(radix)
        self._pow2 = radix & (radix - 1) == 0
        self._chunk = max(1, 60 // radix.bit_length())  # numerals per machine-word chunk
        self._chunk_base = radix**self._chunk

    def check(self, x: str, max_len: int) -> int:
        if not isinstance(x, str):
            raise TypeError("FPE input must be a str")
        n = len(x)
        if not self.min_len <= n <= max_len:
            raise FPEDomainError("input length outside the domain", "cloakgate.fpe.length")
        if not self._charset.issuperset(x):
            raise FPEDomainError("input has characters outside the alphabet", "cloakgate.fpe.alphabet")
        return n

    def to_num(self, x: str) -> int:
        """NUM_radix(X): the numerals of ``x``, most significant first, as an integer."""
        if self._fast_int and (len(x) <= _FAST_DIGITS or self._pow2):
            return int(x if self._to_native is None else x.translate(self._to_native), self.radix)
        index, radix, k = self._index, self.radix, self._chunk
        if index is None:
            index = self._index = {c: i for i, c in enumerate(self.chars)}
        n = 0
        for start in range(0, len(x), k):
            v = 0
            for c in x[start : start + k]:
                v = v * radix + index[c]
            n = n * (self._chunk_base if start + k <= len(x) else radix ** (len(x) - start)) + v
        return n

    def to_str(self, n: int, m: int) -> str:
        """STR^m_radix(n): ``m`` numerals, most significant first, for 0 <= n < radix**m."""
        if self._fmt is not None and (m <= _FAST_DIGITS or self._pow2):
            s = format(n, self._fmt).zfill(m)
            return s if self._from_native is None else s.translate(self._from_native)
        chars, radix, k, base = self.chars, self.radix, self._chunk, self._chunk_base
        out: list[str] = []
        while len(out) < m:
            n, v = divmod(n, base)
            for _ in range(k):
                v, d = divmod(v, radix)
                out.append(chars[d])
        del out[m:]  # the surplus is the most significant end, all zeros since n < radix**m
        out.reverse()
        return "".join(out)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _key_bytes(key: bytes) -> bytes:
    if not isinstance(key, bytes | bytearray | memoryview) or len(key) not in (16, 24, 32):
        raise FPEDomainError("AES key must be 16, 24 or 32 bytes", "cloakgate.fpe.key")
    return bytes(key)


def _tweak_bytes(tweak: bytes) -> bytes:
    if type(tweak) is bytes:
        return tweak
    if not isinstance(tweak, bytearray | memoryview):
        raise TypeError("FPE tweak must be bytes")
    return bytes(tweak)


def _no_pickle(self: object) -> NoReturn:
    raise TypeError(f"{type(self).__name__} holds key material and cannot be pickled")


class FF1:
    """FF1 (SP 800-38G Rev. 1, Algorithms 7 and 8): ten Feistel rounds, PRF = AES-CBC-MAC."""

    __slots__ = ("radix", "alphabet", "min_len", "max_len", "max_tweak_len", "_alpha", "_key", "_ecb")

    def __init__(
        self,
        key: bytes,
        radix: int = 10,
        alphabet: str | None = None,
        max_tweak_len: int = 256,
        *,
        max_len: int = FF1_MAX_LEN,
    ):
        self._alpha = _Alphabet(radix, alphabet)
        self._key = _key_bytes(key)
        self._ecb = Cipher(algorithms.AES(self._key), modes.ECB()).encryptor()
        self.radix = radix
        self.alphabet = self._alpha.chars
        self.min_len = self._alpha.min_len
        if not _is_int(max_tweak_len) or not 0 <= max_tweak_len < 2**32:
            raise FPEDomainError("max_tweak_len must be in [0, 2**32)", "cloakgate.fpe.tweak")
        if not _is_int(max_len) or not self.min_len <= max_len <= 2**32:
            raise FPEDomainError("max_len must be in [minlen, 2**32]", "cloakgate.fpe.length")
        self.max_tweak_len = max_tweak_len
        self.max_len = max_len

    def __repr__(self) -> str:
        return f"FF1(radix={self.radix})"

    __reduce__ = _no_pickle

    def encrypt(self, x: str, tweak: bytes = b"") -> str:
        return self._rounds(x, tweak, decrypt=False)

    def decrypt(self, y: str, tweak: bytes = b"") -> str:
        return self._rounds(y, tweak, decrypt=True)

    def _rounds(self, x: str, tweak: bytes, decrypt: bool) -> str:
        alpha = self._alpha
        n = alpha.check(x, self.max_len)
        tweak = _tweak_bytes(tweak)
        t = len(tweak)
        if t > self.max_tweak_len:
            raise FPEDomainError("tweak longer than max_tweak_len", "cloakgate.fpe.tweak")
        radix, ecb = self.radix, self._ecb.update
        u = n // 2
        v = n - u
        mod_u = radix**u
        mod_v = mod_u if u == v else mod_u * radix
        b = ((mod_v - 1).bit_length() + 7) // 8  # ceil(ceil(v * log2(radix)) / 8), exactly
        d = 4 * ((b + 3) // 4) + 4
        extra = (d - 1) // 16  # blocks of S beyond R

        # PRF(P || Q) is a CBC-MAC. P and the whole blocks of T || 0^pad are the same in every
        # round: fold them once; each round then MACs only the last block(s) of Q.
        p = (b"\x01\x02\x01" + radix.to_bytes(3, "big") + b"\x0a" + bytes((u & 0xFF,))
             + n.to_bytes(4, "big") + t.to_bytes(4, "big"))
        head = tweak + bytes((-t - b - 1) % 16)
        cut = len(head) - len(head) % 16
        y = int.from_bytes(ecb(p))
        for j in range(0, cut, 16):
            y = int.from_bytes(ecb((y ^ int.from_bytes(head[j : j + 16])).to_bytes(16)))
        state, tail = y, head[cut:]
        one_block = len(tail) + 1 + b == 16

        a_num, b_num = alpha.to_num(x[:u]), alpha.to_num(x[u:])
        for i in range(9, -1, -1) if decrypt else range(10):
            q = tail + bytes((i,)) + (a_num if decrypt else b_num).to_bytes(b, "big")
            if one_block:
                r = ecb((state ^ int.from_bytes(q)).to_bytes(16))
            else:
                cbc = Cipher(algorithms.AES(self._key), modes.CBC(state.to_bytes(16))).encryptor()
                r = cbc.update(q)[-16:]
            if extra:
                ri = int.from_bytes(r)
                r += ecb(b"".join((ri ^ j).to_bytes(16) for j in range(1, extra + 1)))
            y = int.from_bytes(r[:d])
            mod = mod_u if i % 2 == 0 else mod_v
            if decrypt:
                a_num, b_num = (b_num - y) % mod, a_num
            else:
                a_num, b_num = b_num, (a_num + y) % mod
        return alpha.to_str(a_num, u) + alpha.to_str(b_num, v)


class FF3_1:  # noqa: N801 - the standard's name
    """FF3-1 (SP 800-38G Rev. 1 initial draft, Algorithms 9 and 10): eight rounds, 56-bit tweak.

    The cipher is AES under the byte-reversed key, applied to byte-reversed blocks; the halves are
    read as numbers of their reversed numerals.
    """

    __slots__ = ("radix", "alphabet", "min_len", "max_len", "_alpha", "_ecb")

    def __init__(self, key: bytes, radix: int = 10, alphabet: str | None = None):
        self._alpha = _Alphabet(radix, alphabet)
        self._ecb = Cipher(algorithms.AES(_key_bytes(key)[::-1]), modes.ECB()).encryptor()
        self.radix = radix
        self.alphabet = self._alpha.chars
        self.min_len = self._alpha.min_len
        half, power = 0, radix
        while power <= 2**96:  # floor(log_radix(2**96)), in integers
            half, power = half + 1, power * radix
        self.max_len = 2 * half

    def __repr__(self) -> str:
        return f"FF3_1(radix={self.radix})"

    __reduce__ = _no_pickle

    def encrypt(self, x: str, tweak: bytes) -> str:
        return self._rounds(x, tweak, decrypt=False)

    def decrypt(self, y: str, tweak: bytes) -> str:
        return self._rounds(y, tweak, decrypt=True)

    def _rounds(self, x: str, tweak: bytes, decrypt: bool) -> str:
        alpha = self._alpha
        n = alpha.check(x, self.max_len)
        tweak = _tweak_bytes(tweak)
        if len(tweak) != 7:
            raise FPEDomainError("FF3-1 tweak must be 56 bits", "cloakgate.fpe.tweak")
        radix, ecb = self.radix, self._ecb.update
        u = (n + 1) // 2
        v = n - u
        mod_u = radix**u
        mod_v = mod_u if u == v else mod_u // radix
        # T_L = T[0..27] || 0^4, T_R = T[32..55] || T[28..31] || 0^4; round i uses W = T_R (even
        # i) or T_L (odd i), XORed with [i]^4. Kept byte-reversed, as they enter REVB(P) last.
        t_left = bytes((tweak[3] & 0xF0, tweak[2], tweak[1], tweak[0]))
        t_right = bytes(((tweak[3] & 0x0F) << 4, tweak[6], tweak[5], tweak[4]))
        w_rev = [bytes((w[0] ^ i,)) + w[1:] for i, w in enumerate((t_right, t_left) * 4)]

        # a_num = NUM_radix(REV(A)), b_num = NUM_radix(REV(B)) throughout.
        a_num, b_num = alpha.to_num(x[:u][::-1]), alpha.to_num(x[u:][::-1])
        for i in range(7, -1, -1) if decrypt else range(8):
            # REVB(P) = REVB([NUM(REV(B))]^12) || REVB(W xor [i]^4); y = NUM(REVB(CIPH(REVB(P))))
            y = int.from_bytes(ecb((a_num if decrypt else b_num).to_bytes(12, "little") + w_rev[i]), "little")
            mod = mod_u if i % 2 == 0 else mod_v
            if decrypt:
                a_num, b_num = (b_num - y) % mod, a_num
            else:
                a_num, b_num = b_num, (a_num + y) % mod
        return alpha.to_str(a_num, u)[::-1] + alpha.to_str(b_num, v)[::-1]
