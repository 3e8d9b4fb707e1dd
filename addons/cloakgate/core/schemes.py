"""Protection schemes. Each protects one string value with a data key.

| scheme        | token | what the SaaS can still do          | what it learns                                  |
|---------------|-------|-------------------------------------|-------------------------------------------------|
| aead          | a     | store and return                    | length (rounded to base32), nothing else        |
| deterministic | d     | equality search, de-duplication     | which values are equal (within the pack)        |
| words         | w     | full-text search on whole words     | word count, word lengths, punctuation, repeats  |
| email         | e     | validate as e-mail, equality        | equality, the configured domain (not the real)  |
| fpe           | none  | format validation (digits stay)     | length and format, equality (fixed tweak)       |
| mask          | none  | nothing (irreversible)              | the kept characters                             |

AEAD is AES-256-GCM with a random 96-bit nonce; deterministic, word and e-mail tokens are AES-SIV
(RFC 5297, 512-bit key); fpe is FF1 (NIST SP 800-38G). Associated data binds the pack and key id, so
a token copied into another pack's data does not decrypt. Subkeys per scheme come from HKDF.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from . import tokens
from .errors import FieldError, InvalidToken
from .keyring import DataKey, KeyRing

Rand = Callable[[int], bytes]


def _ad(pack: str, kid: str, letter: str) -> bytes:
    return b"cloakgate/v1\x00" + pack.encode() + b"\x00" + kid.encode() + b"\x00" + letter.encode()


def _siv(key: DataKey, purpose: str) -> AESSIV:
    siv: AESSIV = key.primitive(purpose)
    return siv


def is_own_token(text: str, ring: KeyRing) -> bool:
    """True if ``text`` is exactly one complete token naming a key of ``ring`` (replays stay put)."""
    try:
        p, _ = tokens.split(text)
    except InvalidToken:
        return False
    return p.total_len == len(text) and ring.lookup(p.kid) is not None


# --- word case: the case pattern of a word rides on the letter case of its token ----------------

def _case_positions(token: str) -> list[int]:
    return [i for i in range(3, len(token)) if token[i].isalpha()]


def _apply_case(token: str, word: str) -> str | None:
    lower = word.lower()
    if lower == word:
        return token
    if len(lower) != len(word):
        return None
    mask = [c != c.lower() for c in word]
    if "".join(c.upper() if m else c for c, m in zip(lower, mask)) != word:
        return None
    pos = _case_positions(token)
    if len(pos) < len(word):
        return None
    chars = list(token)
    for m, i in zip(mask, pos):
        if m:
            chars[i] = chars[i].upper()
    return "".join(chars)


def _restore_case(token_text: str, lower_word: str) -> str:
    pos = _case_positions(token_text)
    if not any(token_text[i].isupper() for i in pos):
        return lower_word
    return "".join(
        c.upper() if k < len(pos) and token_text[pos[k]].isupper() else c for k, c in enumerate(lower_word)
    )


# --- e-mail plaintext packing: most addresses fit a 41-character alphabet ----------------------

_EMAIL_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789.-_@+"
_EMAIL_INDEX = {c: i for i, c in enumerate(_EMAIL_ALPHABET)}


def _pack_email(s: str) -> bytes:
    if s and all(c in _EMAIL_INDEX for c in s):
        n = 1
        for c in s:
            n = n * 41 + _EMAIL_INDEX[c]
        return b"\x01" + n.to_bytes((n.bit_length() + 7) // 8, "big")
    return b"\x00" + s.encode("utf-8")


def _unpack_email(b: bytes) -> str:
    if b[:1] == b"\x00":
        return b[1:].decode("utf-8")
    if b[:1] != b"\x01":
        raise InvalidToken()
    n = int.from_bytes(b[1:], "big")
    out = []
    while n > 1:
        n, d = divmod(n, 41)
        out.append(_EMAIL_ALPHABET[d])
    if n != 1:
        raise InvalidToken()
    return "".join(reversed(out))


# --- reveal of tagged tokens ---------------------------------------------------------------------

def reveal_token(text: str, ring: KeyRing) -> tuple[str, int]:
    """Decrypt one tagged token found in a response. Returns (plaintext, characters consumed).

    Raises InvalidToken for anything that is not a complete, authentic token of a known key:
    truncated, tampered, foreign (unknown key id) all look the same from outside.
    """
    p, payload = tokens.split(text)
    key = ring.lookup(p.kid)
    if key is None:
        raise InvalidToken()
    ct = tokens.b32decode(payload.lower())
    try:
        if p.scheme == "a":
            if len(ct) < 12 + 16:
                raise InvalidToken()
            pt = key.primitive("aead").decrypt(ct[:12], ct[12:], _ad(key.pack, key.kid, "a"))
            return pt.decode("utf-8"), p.total_len
        if p.scheme == "d":
            pt = _siv(key, "deterministic").decrypt(ct, [_ad(key.pack, key.kid, "d")])
            return pt.decode("utf-8"), p.total_len
        if p.scheme == "w":
            pt = _siv(key, "words").decrypt(ct, [_ad(key.pack, key.kid, "w")])
            return _restore_case(text[: p.total_len], pt.decode("utf-8")), p.total_len
        if p.scheme == "e":
            pt = _siv(key, "email").decrypt(ct, [_ad(key.pack, key.kid, "e")])
            return _unpack_email(pt), p.total_len
    except (InvalidTag, UnicodeDecodeError, ValueError):
        raise InvalidToken() from None
    raise InvalidToken()


# --- schemes ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scheme:
    """Base: a configured scheme. ``tagged`` schemes are revealed wherever their tokens appear."""

    name: str
    tagged: bool = True
    # The same value under the same key gives the same output (callers may cache it); aead is random.
    deterministic: ClassVar[bool] = False

    def protect(self, value: str, key: DataKey, ring: KeyRing, rand: Rand) -> str:
        raise NotImplementedError

    def reveal(self, value: str, key: DataKey) -> str:
        """Reveal by position (untagged schemes only)."""
        raise InvalidToken()


@dataclass(frozen=True)
class Aead(Scheme):
    name: str = "aead"

    def protect(self, value: str, key: DataKey, ring: KeyRing, rand: Rand) -> str:
        if is_own_token(value, ring):
            return value
        nonce = rand(12)
        ct = key.primitive("aead").encrypt(nonce, value.encode("utf-8"), _ad(key.pack, key.kid, "a"))
        return tokens.encode("a", key.kid, nonce + ct)


@dataclass(frozen=True)
class Deterministic(Scheme):
    name: str = "deterministic"
    deterministic: ClassVar[bool] = True

    def protect(self, value: str, key: DataKey, ring: KeyRing, rand: Rand) -> str:
        if is_own_token(value, ring):
            return value
        ct = _siv(key, "deterministic").encrypt(value.encode("utf-8"), [_ad(key.pack, key.kid, "d")])
        return tokens.encode("d", key.kid, ct)


# Word tokens are deterministic: cache them per key handle (memory only; a new handle, a new cache).
_WORD_CACHE_SIZE = 50_000
_PHRASE_MAX = 80  # longest text value kept whole in the word cache
# Markup kept in clear when a words field holds HTML: comments, script/style blocks, tags, entities.
_WORD_SPLIT = re.compile(r"(\w+)")
_HTML_SPLIT = re.compile(  # one capturing group: split() returns text, markup, text, ...
    r"(<!--.*?-->|<script\b.*?</script\s*>|<style\b.*?</style\s*>|<[^>]*>|&#?[A-Za-z0-9]+;)",
    re.DOTALL | re.IGNORECASE,
)


@dataclass(frozen=True)
class Words(Scheme):
    """Every word becomes its own deterministic token (AES-SIV of the lower-cased word).

    The letters of a token carry the upper-case positions of its word, so search engines that fold
    case find every spelling, and the user gets the original spelling back. A word whose case
    cannot be carried that way becomes a deterministic token of the exact word.
    """

    name: str = "words"
    deterministic: ClassVar[bool] = True
    html: bool = False

    @staticmethod
    def _cache(key: DataKey) -> dict[str, str]:
        return key.cached("words/cache", dict)

    @staticmethod
    def _remember(cache: dict[str, str], text: str, tok: str) -> str:
        if len(cache) >= _WORD_CACHE_SIZE:
            cache.clear()
        cache[text] = tok
        return tok

    def word(self, w: str, key: DataKey, ring: KeyRing) -> str:
        cache = self._cache(key)
        hit = cache.get(w)
        if hit is not None:
            return hit
        return self._remember(cache, w, self._word(w, key, ring))

    def _word(self, w: str, key: DataKey, ring: KeyRing) -> str:
        if w.startswith(("qx", "QX", "Qx", "qX")) and is_own_token(w, ring):
            return w
        lower = w.lower()
        ct = _siv(key, "words").encrypt(lower.encode("utf-8"), [_ad(key.pack, key.kid, "w")])
        tok = tokens.encode("w", key.kid, ct)
        cased = _apply_case(tok, w)
        if cased is None:
            ct = _siv(key, "deterministic").encrypt(w.encode("utf-8"), [_ad(key.pack, key.kid, "d")])
            return tokens.encode("d", key.kid, ct)
        return cased

    def _words(self, parts: list[str], key: DataKey, ring: KeyRing) -> None:
        """Replace every word of ``parts`` (split by _WORD_SPLIT: words at odd indexes) in place.

        Words repeat: a cached word costs a dict look-up done in C, only new words run Python code.
        """
        words = parts[1::2]
        toks = list(map(self._cache(key).get, words))
        if None in toks:
            for i, t in enumerate(toks):
                if t is None:
                    toks[i] = self.word(words[i], key, ring)
        parts[1::2] = toks

    def protect(self, value: str, key: DataKey, ring: KeyRing, rand: Rand) -> str:
        if not self.html:
            # Short values (names, subjects) repeat as a whole: the word cache keeps them too, and a
            # single word is its own entry either way.
            cache = self._cache(key)
            hit = cache.get(value)
            if hit is not None:
                return hit
            parts = _WORD_SPLIT.split(value)
            self._words(parts, key, ring)
            out = "".join(parts)
            return self._remember(cache, value, out) if len(value) <= _PHRASE_MAX else out
        chunks = _HTML_SPLIT.split(value)  # text, markup, text, ...: markup stays as it is
        if "\x00" in value:  # (not in any HTML worth the name) text by text
            for i in range(0, len(chunks), 2):
                parts = _WORD_SPLIT.split(chunks[i])
                self._words(parts, key, ring)
                chunks[i] = "".join(parts)
            return "".join(chunks)
        # The texts joined by NULs, which no word or token holds: one split and one look-up pass for
        # the whole value instead of one per text between tags.
        parts = _WORD_SPLIT.split("\x00".join(chunks[0::2]))
        self._words(parts, key, ring)
        chunks[0::2] = "".join(parts).split("\x00")
        return "".join(chunks)


@dataclass(frozen=True)
class Email(Scheme):
    """An address that passes e-mail validation: ``<token>@<domain>``, the whole address inside.

    Addresses are case-folded first (mail systems, and Salesforce's storage, treat them so): equal
    addresses in any spelling give the same lowercase token, and the user gets the lowercase form back.
    A token longer than the local part may be (64) continues in a first domain label:
    ``<token start>@<token rest>.<domain>`` (a label holds up to 63 characters).
    """

    name: str = "email"
    deterministic: ClassVar[bool] = True
    domain: str = "protected.invalid"
    local_max: int = 64

    def protect(self, value: str, key: DataKey, ring: KeyRing, rand: Rand) -> str:
        local, at, dom = value.rpartition("@")
        if at and dom.endswith(self.domain) and local.startswith(("qx", "QX")):
            joined = local + dom[: -len(self.domain)].rstrip(".")
            if is_own_token(joined, ring):
                return value
        if not local or not at or not dom or any(c.isspace() for c in value):
            raise FieldError("value is not an e-mail address", code="cloakgate.field.not_email")
        ct = _siv(key, "email").encrypt(_pack_email(value.lower()), [_ad(key.pack, key.kid, "e")])
        tok = tokens.encode("e", key.kid, ct)
        if len(tok) <= self.local_max:
            return tok + "@" + self.domain
        rest = tok[self.local_max :]
        if len(rest) > 63:
            raise FieldError("protected address exceeds its limit", code="cloakgate.field.too_long")
        return tok[: self.local_max] + "@" + rest + "." + self.domain


_RADIX_ALPHABETS = {"digits": "0123456789", "alnum": "0123456789abcdefghijklmnopqrstuvwxyz"}


@dataclass(frozen=True)
class Fpe(Scheme):
    """FF1 over the digits (or letters and digits) of a value; other characters stay in place."""

    name: str = "fpe"
    deterministic: ClassVar[bool] = True
    tagged: bool = False
    alphabet: str = "digits"
    tweak: str = ""

    def _cipher(self, key: DataKey) -> Any:
        """One FF1 per key and alphabet, built once (the AES set-up dominates a field's cost)."""
        from .fpe import FF1

        alpha = _RADIX_ALPHABETS[self.alphabet]
        build = lambda: FF1(key.subkey("fpe"), radix=len(alpha), alphabet=alpha)  # noqa: E731
        cipher: FF1 = key.cached(f"fpe/{self.alphabet}", build)
        return cipher

    def _tweak(self, key: DataKey) -> bytes:
        return (key.pack + "/" + self.tweak).encode("utf-8")

    def _apply(self, value: str, key: DataKey, decrypt: bool) -> str:
        from .fpe import FPEDomainError

        alpha = _RADIX_ALPHABETS[self.alphabet]
        folded = value.lower() if self.alphabet == "alnum" else value
        pos = [i for i, c in enumerate(folded) if c in alpha]
        numerals = "".join(folded[i] for i in pos)
        cipher = self._cipher(key)
        try:
            out = (cipher.decrypt if decrypt else cipher.encrypt)(numerals, self._tweak(key))
        except FPEDomainError:
            raise FieldError("value outside the format-preserving domain", code="cloakgate.fpe.domain") from None
        chars = list(value)
        upper = self.alphabet == "alnum" and any(c.isalpha() for c in value) and value.upper() == value
        for i, c in zip(pos, out):
            chars[i] = c.upper() if upper else c
        return "".join(chars)

    def protect(self, value: str, key: DataKey, ring: KeyRing, rand: Rand) -> str:
        return self._apply(value, key, decrypt=False)

    def reveal(self, value: str, key: DataKey) -> str:
        try:
            return self._apply(value, key, decrypt=True)
        except FieldError:
            raise InvalidToken() from None


@dataclass(frozen=True)
class Mask(Scheme):
    """Irreversible redaction: every letter and digit but the last ``keep`` becomes ``char``."""

    name: str = "mask"
    deterministic: ClassVar[bool] = True
    tagged: bool = False
    keep: int = 4
    char: str = "*"

    def protect(self, value: str, key: DataKey, ring: KeyRing, rand: Rand) -> str:
        alnum = [i for i, c in enumerate(value) if c.isalnum()]
        hide = set(alnum[: max(0, len(alnum) - self.keep)])
        return "".join(self.char if i in hide else c for i, c in enumerate(value))


BUILTIN: Mapping[str, Scheme] = {
    "aead": Aead(),
    "deterministic": Deterministic(),
    "words": Words(),
    "fpe": Fpe(),
    "mask": Mask(),
}
TYPES: Mapping[str, type[Scheme]] = {
    "aead": Aead,
    "deterministic": Deterministic,
    "words": Words,
    "email": Email,
    "fpe": Fpe,
    "mask": Mask,
}


def make(spec: Mapping[str, Any]) -> Scheme:
    """A scheme from its rule-pack form ``{type: words, html: true}`` (validated by the schema)."""
    params = {k: v for k, v in spec.items() if k != "type"}
    return TYPES[spec["type"]](**params)
