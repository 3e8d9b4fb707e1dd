"""Format-preserving encryption: FF1 and FF3-1 from NIST SP 800-38G Rev. 1, over AES.

Strings are numerals over an alphabet (default: the first ``radix`` characters of 0-9a-z). The
domain must hold at least 1,000,000 values (radix ** minlen >= 10**6, Rev. 1). Errors never quote
the input.
"""

from __future__ import annotations

import math

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

DIGITS = "0123456789"
ALNUM_LOWER = "0123456789abcdefghijklmnopqrstuvwxyz"
_MIN_DOMAIN = 1_000_000


class FPEDomainError(ValueError):
    """The input is outside the cipher's domain (length, alphabet, key or tweak size)."""


class _Numerals:
    def __init__(self, radix: int, alphabet: str | None):
        if alphabet is None:
            if not 2 <= radix <= len(ALNUM_LOWER):
                raise FPEDomainError("radix needs an explicit alphabet")
            alphabet = ALNUM_LOWER[:radix]
        if len(alphabet) != radix or len(set(alphabet)) != radix or not 2 <= radix <= 65536:
            raise FPEDomainError("alphabet must have radix distinct characters")
        self.radix = radix
        self.alphabet = alphabet
        self.index = {c: i for i, c in enumerate(alphabet)}
        self.native = alphabet == ALNUM_LOWER[:radix]  # int(s, radix) understands it
        self.minlen = 2
        while radix**self.minlen < _MIN_DOMAIN:
            self.minlen += 1

    def check(self, x: str, maxlen: int) -> None:
        if not self.minlen <= len(x) <= maxlen:
            raise FPEDomainError("input length outside the domain")
        if any(c not in self.index for c in x):
            raise FPEDomainError("input has characters outside the alphabet")

    def num(self, x: str) -> int:
        if not x:
            return 0
        if self.native:
            return int(x, self.radix)
        n = 0
        for c in x:
            n = n * self.radix + self.index[c]
        return n

    def str(self, n: int, m: int) -> str:
        if self.radix == 10:
            return str(n).zfill(m)
        out = []
        for _ in range(m):
            n, d = divmod(n, self.radix)
            out.append(self.alphabet[d])
        return "".join(reversed(out))


def _aes(key: bytes):  # noqa: ANN202 - an ECB encryptor: one block in, one block out
    if len(key) not in (16, 24, 32):
        raise FPEDomainError("AES key must be 16, 24 or 32 bytes")
    return Cipher(algorithms.AES(key), modes.ECB()).encryptor()


class FF1:
    def __init__(self, key: bytes, radix: int = 10, alphabet: str | None = None, max_tweak_len: int = 256):
        self._num = _Numerals(radix, alphabet)
        self._enc = _aes(key)
        self.radix = radix
        self.max_tweak_len = max_tweak_len

    def _prf(self, data: bytes) -> bytes:
        y = bytes(16)
        for i in range(0, len(data), 16):
            y = self._enc.update(bytes(a ^ b for a, b in zip(y, data[i : i + 16])))
        return y

    def _rounds(self, x: str, tweak: bytes, decrypt: bool) -> str:
        nm = self._num
        nm.check(x, 2**32)
        if len(tweak) > self.max_tweak_len:
            raise FPEDomainError("tweak too long")
        radix, n, t = self.radix, len(x), len(tweak)
        u, v = n // 2, n - n // 2
        b = math.ceil((radix**v - 1).bit_length() / 8)
        d = 4 * math.ceil(b / 4) + 4
        p = bytes([1, 2, 1]) + radix.to_bytes(3, "big") + bytes([10, u % 256]) + n.to_bytes(4, "big") + t.to_bytes(4, "big")
        pad = bytes((-t - b - 1) % 16)
        a_num, b_num = nm.num(x[:u]), nm.num(x[u:])
        mod_u, mod_v = radix**u, radix**v
        order = range(9, -1, -1) if decrypt else range(10)
        for i in order:
            src = a_num if decrypt else b_num
            q = tweak + pad + bytes([i]) + src.to_bytes(b, "big")
            r = self._prf(p + q)
            s = r
            j = 1
            while len(s) < d:
                s += self._enc.update(bytes(x ^ y for x, y in zip(r, j.to_bytes(16, "big"))))
                j += 1
            y = int.from_bytes(s[:d], "big")
            mod = mod_u if i % 2 == 0 else mod_v
            if decrypt:
                c = (b_num - y) % mod
                b_num, a_num = a_num, c
            else:
                c = (a_num + y) % mod
                a_num, b_num = b_num, c
        return nm.str(a_num, u) + nm.str(b_num, v)

    def encrypt(self, x: str, tweak: bytes = b"") -> str:
        return self._rounds(x, tweak, decrypt=False)

    def decrypt(self, y: str, tweak: bytes = b"") -> str:
        return self._rounds(y, tweak, decrypt=True)


class FF3_1:  # noqa: N801 - the standard's name
    def __init__(self, key: bytes, radix: int = 10, alphabet: str | None = None):
        self._num = _Numerals(radix, alphabet)
        self._enc = _aes(key[::-1])
        self.radix = radix
        self.maxlen = 2 * math.floor(96 / math.log2(radix))

    def _rounds(self, x: str, tweak: bytes, decrypt: bool) -> str:
        nm = self._num
        nm.check(x, self.maxlen)
        if len(tweak) != 7:
            raise FPEDomainError("FF3-1 tweak is 56 bits")
        radix, n = self.radix, len(x)
        u, v = math.ceil(n / 2), n - math.ceil(n / 2)
        tl = tweak[:3] + bytes([tweak[3] & 0xF0])
        tr = tweak[4:7] + bytes([(tweak[3] & 0x0F) << 4])
        a, b = x[:u], x[u:]
        order = range(7, -1, -1) if decrypt else range(8)
        for i in order:
            m, w = (u, tr) if i % 2 == 0 else (v, tl)
            src = a if decrypt else b
            p = bytes(wb ^ ib for wb, ib in zip(w, i.to_bytes(4, "big"))) + nm.num(src[::-1]).to_bytes(12, "big")
            y = int.from_bytes(self._enc.update(p[::-1])[::-1], "big")
            if decrypt:
                c = (nm.num(b[::-1]) - y) % radix**m
                a, b = nm.str(c, m)[::-1], a
            else:
                c = (nm.num(a[::-1]) + y) % radix**m
                a, b = b, nm.str(c, m)[::-1]
        return a + b

    def encrypt(self, x: str, tweak: bytes) -> str:
        return self._rounds(x, tweak, decrypt=False)

    def decrypt(self, y: str, tweak: bytes) -> str:
        return self._rounds(y, tweak, decrypt=True)
