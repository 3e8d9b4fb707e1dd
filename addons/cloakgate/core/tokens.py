"""The token format: how protected values travel through the SaaS and are found again.

Grammar (ABNF-ish, all characters ASCII)::

    token   = "qx" scheme kid length payload
    scheme  = "a" / "d" / "w" / "e"        ; aead, deterministic, word, e-mail local part
    kid     = 3b32                          ; key id: names the data key (pack and version)
    length  = 1*b32                         ; number of payload characters as a base-32 varint:
                                            ; each character carries 4 bits (value & 15), value & 16
                                            ; means "another length character follows"
    payload = *b32                          ; the ciphertext, RFC 4648 base32 without padding
    b32     = %x61-7A / %x32-37             ; a-z 2-7 (lower case)

Properties the SaaS constraints ask for (shared/SAAS.md §1.2, §10):

- one alphanumeric word: no HTML, markdown, wiki, URL or e-mail syntax characters;
- safe under lower-casing: parsing is case-insensitive, so a SaaS that lower-cases keeps it valid
  (the word scheme uses letter case to carry the case of the original word, see schemes.py);
- self-delimiting: the length field says where a token ends, so a truncated copy (a 255-character
  preview) is recognised as truncated and left alone, never mis-decoded;
- carries its key id, so rotation is "encrypt with the primary, decrypt with whichever key the
  token names";
- authenticated: every payload is AEAD or SIV output, so tampering fails closed (the token stays).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from .errors import InvalidToken

B32 = "abcdefghijklmnopqrstuvwxyz234567"
_B32_INDEX = {c: i for i, c in enumerate(B32)}
PREFIX = "qx"
SCHEMES = frozenset("adwe")
KID_LEN = 3
HEADER_MIN = len(PREFIX) + 1 + KID_LEN + 1

# A token starts at a word boundary, or right after an escape that ends in a letter or digit (JSON
# "\n" or "\u001f", URL "%0A"); matching is case-insensitive. The match may run past the token's
# end (glued characters) or stop short of it (truncation): the length field decides.
ESCAPE_END = r"(?:\\[nrtbf]|\\u[0-9A-Fa-f]{4}|%[0-9A-Fa-f]{2})"  # escapes that end in a letter or digit
_ESCAPES = ESCAPE_END[3:-1].split("|")
_START = "(?:(?<![A-Za-z0-9])" + "".join(f"|(?<={e})" for e in _ESCAPES) + ")"
_BODY = r"[Qq][Xx][AaDdWwEe][A-Za-z2-7]{3,}"
BODY_RE = re.compile(_BODY.encode())  # a candidate, without the start condition
TOKEN_RE = re.compile((_START + _BODY).encode())
TOKEN_RE_STR = re.compile(_START + _BODY)


def is_kid(kid: str) -> bool:
    return len(kid) == KID_LEN and all(c in _B32_INDEX for c in kid)


@functools.lru_cache(maxsize=4096)  # payload lengths repeat: the length field costs a look-up
def _varint(n: int) -> str:
    groups = []
    while True:
        groups.append(n & 15)
        n >>= 4
        if not n:
            break
    groups.reverse()
    return "".join(B32[g | 16] for g in groups[:-1]) + B32[groups[-1]]


# Encoding RFC 4648 base32 through one int: the standard library's b32encode loops in Python over
# every 5 bytes (27 us for an 86-byte ciphertext here, most of protecting a field). A slice of the
# data becomes one integer whose 5-bit groups are spread to one per byte by a few masks and shifts
# (halving the block of groups each time), then bytes.translate maps 0..31 onto the alphabet (5 us).
_FROM_5BITS = bytes.maketrans(bytes(range(32)), B32.encode("ascii"))
_ENCODE_SLICE = 320  # bytes encoded as one integer (a multiple of 5): 512 characters
_SPREAD_PLANS: dict[int, tuple[tuple[int, int, int], ...]] = {}


def _spread_plan(groups: int) -> tuple[tuple[int, int, int], ...]:
    """(low mask, high mask, shift) per step that moves ``groups`` packed 5-bit groups to one per
    byte. A step splits every block of groups (a block starts where it belongs) in halves: the lower
    half stays, the upper half moves left by 3 bits per group of the lower half."""
    steps = []
    block = 1 << max(0, (groups - 1).bit_length())
    while block > 1:
        half = block // 2
        blocks = -(-groups // block)
        ones = (1 << (5 * half)) - 1
        low = int.from_bytes(ones.to_bytes(block, "big") * blocks, "big")  # a block takes `block` bytes
        steps.append((low, low << (5 * half), 3 * half))
        block = half
    return tuple(steps)


def _b32_slice(data: bytes) -> bytes:
    chunks = -(-len(data) // 5)  # 5 bytes -> 8 characters
    groups = 8 * chunks
    plan = _SPREAD_PLANS.get(groups)
    if plan is None:
        plan = _SPREAD_PLANS[groups] = _spread_plan(groups)  # at most _ENCODE_SLICE // 5 sizes
    n = int.from_bytes(data, "big") << (40 * chunks - 8 * len(data))  # zero bits fill the last chunk
    for low, high, shift in plan:
        n = (n & low) | ((n & high) << shift)
    return n.to_bytes(groups, "big").translate(_FROM_5BITS)[: -(-8 * len(data) // 5)]


def b32encode(data: bytes) -> str:
    """RFC 4648 base32 of ``data``, lower case, without padding."""
    if len(data) <= _ENCODE_SLICE:
        return _b32_slice(data).decode("ascii") if data else ""
    step = _ENCODE_SLICE
    return b"".join([_b32_slice(data[i : i + step]) for i in range(0, len(data), step)]).decode("ascii")


# Decoding RFC 4648 base32 through int(), whose conversion runs in C: the standard library's
# b32decode loops in Python over every 8 characters, which made it the larger part of revealing a
# token seen for the first time. The alphabet maps onto int()'s base-32 digits (0-9, a-v).
_TO_INT_DIGITS = str.maketrans(B32, "0123456789abcdefghijklmnopqrstuv")
_B32_TEXT = re.compile("[a-z2-7]*")
_DECODED_LEN = {0: 0, 2: 1, 4: 2, 5: 3, 7: 4}  # bytes in a last group of n % 8 characters


def b32decode(text: str) -> bytes:
    """The bytes of an unpadded base32 text (either case). Raises InvalidToken for a length no
    encoding has or a character outside the alphabet; unused bits of the last character are
    ignored, as the standard library's decoder does (RFC 4648 lets decoders do either)."""
    tail = _DECODED_LEN.get(len(text) % 8)
    if tail is None or not text.isascii():  # (a Kelvin sign lower-cases to "k")
        raise InvalidToken()
    text = text.lower()
    if not text:
        return b""
    if _B32_TEXT.fullmatch(text) is None:
        raise InvalidToken()
    n_bytes = len(text) // 8 * 5 + tail
    value = int(text.translate(_TO_INT_DIGITS), 32) >> (5 * len(text) - 8 * n_bytes)
    return value.to_bytes(n_bytes, "big")


def encode(scheme: str, kid: str, ciphertext: bytes) -> str:
    payload = b32encode(ciphertext)
    return PREFIX + scheme + kid + _varint(len(payload)) + payload


@dataclass(frozen=True, slots=True)
class Parsed:
    scheme: str
    kid: str
    header_len: int  # characters before the payload
    payload_len: int

    @property
    def total_len(self) -> int:
        return self.header_len + self.payload_len


def parse_header(text: str) -> Parsed:
    """Parse the fixed part of a token (case-insensitive). Raises InvalidToken."""
    t = text.lower()
    if len(t) < HEADER_MIN or not t.startswith(PREFIX) or t[2] not in SCHEMES:
        raise InvalidToken()
    kid = t[3 : 3 + KID_LEN]
    if not is_kid(kid):
        raise InvalidToken()
    n = 0
    i = 3 + KID_LEN
    for _ in range(6):  # at most 24 bits of length: far beyond any body limit
        if i >= len(t):
            raise InvalidToken()
        v = _B32_INDEX.get(t[i])
        if v is None:
            raise InvalidToken()
        n = (n << 4) | (v & 15)
        i += 1
        if not v & 16:
            return Parsed(t[2], kid, i, n)
    raise InvalidToken()


def split(text: str) -> tuple[Parsed, str]:
    """Parse a candidate token: returns the header and the payload text (original case).

    Raises InvalidToken when the candidate is shorter than its declared length (truncated).
    Characters after the declared end are not part of the token.
    """
    p = parse_header(text)
    if len(text) < p.total_len:
        raise InvalidToken()
    return p, text[p.header_len : p.total_len]
