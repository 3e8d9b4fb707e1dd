"""Reveal: find tokens in responses and put plaintext back, escaped for where each token stood.

Tagged tokens are found anywhere in a textual body by one regex pass over the bytes (JSON, HTML,
JavaScript, XML, CSV, plain text, ``while(1);`` prefixes: the scan does not parse). Untagged (fpe)
values are revealed by position, per the route's ``reveal`` selectors. Truncated, tampered and
foreign tokens stay exactly as they are and are counted.
"""

from __future__ import annotations

import html
import json
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from . import jsonspan, schemes, tokens
from .codecs import encoding, media_type, splice
from .errors import BodyError, InvalidToken
from .keyring import KeyRing
from .rules import Pack, RevealRule

CONTEXTS = ("json", "html", "xml", "text")
# Possessive ("{3,}+", "*+"): a token's letters never include the space or mark that follows it, so
# giving some back cannot help a match, and the regex engine keeps no backtracking state.
_REST = tokens.BODY_RE.pattern[len(b"[Qq]"):] + b"+"  # a candidate after its first letter


def _started(first: bytes) -> bytes:
    """A candidate's first letter with the token's start condition (no letter or digit before it,
    unless an escape ends there: JSON ``\\n``, URL ``%0A``), checked right after that letter by
    lookbehinds that include it: the pattern still begins with a literal, which keeps the regex
    engine's fast search, and a "qx..." glued to a word is no candidate (no Python-level check)."""
    after = [b"(?<![A-Za-z0-9]" + first + b")"]
    after += [b"(?<=" + e.encode() + first + b")" for e in tokens.ESCAPE_END[3:-1].split("|")]
    return first + b"(?:" + b"|".join(after) + b")"


# A segment: from a token's start to the next byte that ends a string or text node in the body's
# context (JSON's quote, markup's "<", a line in text), which no token holds: a subject,
# a JSON value of word tokens, a paragraph. The scan looks segments up whole. Within one, the bytes
# after its first candidate match a single negated byte, which the regex engine checks several
# times faster than the token's letter class (counted in instructions).
SEGMENT_END = {"json": ord('"'), "html": ord("<"), "xml": ord("<"), "text": ord("\n")}


def _segment_split(first: bytes, end: int) -> re.Pattern[bytes]:
    """Segments whose first candidate begins with ``first``, each one group (so ``split`` keeps them)."""
    return re.compile(b"(" + _started(first) + b"[Xx][AaDdWwEe][^" + re.escape(bytes([end])) + b"]*+)")


# per (end byte, whether segments may start with "QX" or "Qx"): if not, a literal "q" starts the pattern
_SEGMENT_SPLIT = {(end, upper): _segment_split(b"[Qq]" if upper else b"q", end)
                  for end in set(SEGMENT_END.values()) for upper in (False, True)}


def split_segments_python(data: bytes, end: int) -> list[bytes]:
    """Text, segment, text, ..., text. The gateway writes "qx" in lower case; an upper-case "Q"
    appears only where the SaaS changed the case. Without one, a literal "q" lets the regex engine
    skip text fast."""
    return _SEGMENT_SPLIT[end, _has_upper_q(data)].split(data)


class SegmentTablePython(dict):  # type: ignore[type-arg]
    """Segment -> (revealed bytes, packed counts): the table of segments seen before (the C module's
    ``Table`` where the install built it). A segment not in it reads as None, so that one
    ``operator.itemgetter`` call looks up every segment of a body."""

    __slots__ = ()

    def __missing__(self, key: bytes) -> None:
        return None

    def put(self, segment: bytes, revealed: bytes, counts: int) -> None:
        self[segment] = (revealed, counts)


def substitute_python(data: bytes, end: int, table: SegmentTablePython) -> tuple[bytes, int] | None:
    """The scan's hot path: ``data`` with every segment replaced by its revealed bytes, and the sum of
    the segments' packed counts; None if a segment is not in ``table`` (or reveals to empty bytes)."""
    parts = split_segments_python(data, end)
    if len(parts) == 1:
        return data, 0
    segments = parts[1::2]
    entries = operator.itemgetter(*segments)(table) if len(segments) > 1 else (table[segments[0]],)
    if None in entries:
        return None
    news = [e[0] for e in entries]
    if not all(news):
        return None
    parts[1::2] = news
    return b"".join(parts), sum([e[1] for e in entries])


try:  # the same in C, built at install where a compiler was at hand (tests hold them equal)
    from ._segments import Table as SegmentTable, split as split_segments, substitute
except ImportError:  # pragma: no cover - depends on the build
    split_segments, substitute, SegmentTable = split_segments_python, substitute_python, SegmentTablePython
# The candidates of one segment, each one group: the token grammar, its start condition included.
_CAND_SPLIT = re.compile(b"(" + _started(b"[Qq]") + _REST + b")")
_COUNT_ORDER = b"dwae"  # a segment's counts: revealed per scheme letter in this order, truncated, invalid
# A segment's six counts travel packed into one int, 31 bits each (no field carries into the next
# below 2**31 candidates per body, far beyond any body limit), so that a body's totals are one
# ``sum`` in C over its segments. Deterministic and word tokens come first: a segment of only those
# (the ones cached) packs below 2**62, and ``sum`` adds such ints in C without allocating.
_COUNT_BITS = 31
_COUNT_MASK = (1 << _COUNT_BITS) - 1
_UPPER_Q = re.compile(rb"Q[Xx]")
_UPPER_Q_SHIFT = 10  # "Q"s looked at one by one: one per 2**10 bytes of body, then the regex
_X = (b"X", b"x")
_THIRD = operator.itemgetter(2)  # a candidate's scheme letter
_NOT_TOKEN, _TRUNCATED, _INVALID = 0, 1, 2  # why a candidate stays as it is
_EMAIL_DOMAIN = re.compile(rb"@([A-Za-z0-9-]+)(?:\.[A-Za-z0-9-]+)+")  # the domain after an e-mail token
_B32_LABEL = re.compile(rb"[A-Za-z2-7]+")
_CACHED = frozenset("dwe")  # deterministic schemes repeat: their plaintexts are worth caching


def _pack_counts(counts: Sequence[int]) -> int:
    return sum(n << (_COUNT_BITS * k) for k, n in enumerate(counts))


def _unpack_counts(packed: int) -> list[int]:
    b, m = _COUNT_BITS, _COUNT_MASK
    return [packed & m, packed >> b & m, packed >> 2 * b & m, packed >> 3 * b & m, packed >> 4 * b & m,
            packed >> 5 * b]


_SCHEME_OF = {ord("a"): "aead", ord("d"): "deterministic", ord("w"): "words", ord("e"): "email"}
_STATS_MEMO: dict[int, tuple[int, int, int, tuple[tuple[str, int], ...]]] = {}


def _stats_of(packed: int) -> tuple[int, int, int, tuple[tuple[str, int], ...]]:
    """Revealed, truncated, invalid and revealed per scheme name of a body's packed counts, memoized
    (a body read again and again has the same counts every time; bounded all the same)."""
    hit = _STATS_MEMO.get(packed)
    if hit is None:
        totals = _unpack_counts(packed)
        by_scheme = tuple((_SCHEME_OF[ch], n) for ch, n in zip(_COUNT_ORDER, totals) if n)
        hit = (sum(totals[:4]), totals[4], totals[5], by_scheme)
        if len(_STATS_MEMO) >= 4096:
            _STATS_MEMO.clear()
        _STATS_MEMO[packed] = hit
    return hit


def stats_of(packed: int) -> RevealStats:
    """A body's packed counts (the sum ``substitute`` answers) as stats (a new object: callers add to it)."""
    revealed, truncated, invalid, by_scheme = _stats_of(packed)
    return RevealStats(revealed, truncated, invalid, dict(by_scheme))


def context_for(content_type: str | None) -> str | None:
    """Which escaping revealed plaintext needs in a body of this type; None: not textual."""
    mt = media_type(content_type)
    if not mt:
        return None
    if mt.endswith("json") or mt.endswith("javascript") or mt.endswith("ecmascript"):
        return "json"
    if mt in ("text/html", "application/xhtml+xml"):
        return "html"
    if mt.endswith("/xml") or mt.endswith("+xml"):
        return "xml"
    if mt.startswith("text/"):
        return "text"
    return None


def _json_escape(s: str, ascii_only: bool) -> str:
    out = json.dumps(s, ensure_ascii=ascii_only)[1:-1]
    # Safe inside JSON and inside JavaScript string literals of either quote, and inside <script>.
    return (
        out.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").replace("'", "\\u0027")
        .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    )


def escape_for(context: str, s: str, charset: str) -> bytes:
    if context == "json":
        return _json_escape(s, charset not in ("utf-8", "utf8")).encode(charset, "strict")
    if context in ("html", "xml"):
        return html.escape(s, quote=True).encode(charset, "xmlcharrefreplace")
    return s.encode(charset, "replace")


@dataclass
class RevealStats:
    revealed: int = 0
    truncated: int = 0
    invalid: int = 0  # tampered, or a key this gateway does not hold
    by_scheme: dict[str, int] = field(default_factory=dict)  # a dict: a Counter costs 20 times as much to create

    @property
    def skipped(self) -> int:
        return self.truncated + self.invalid

    def add(self, other: RevealStats) -> None:
        self.revealed += other.revealed
        self.truncated += other.truncated
        self.invalid += other.invalid
        for name, n in other.by_scheme.items():
            self.by_scheme[name] = self.by_scheme.get(name, 0) + n


class Revealer:
    """Scans bytes for tokens. Keeps bounded in-memory caches of deterministic plaintexts.

    Caches (memory only, dropped when the key ring changes): escaped plaintext per deterministic
    token, the outcome of candidates left as they are, and the revealed bytes of whole segments
    without aead tokens (a subject, a JSON value of word tokens, a paragraph), bounded in entries and
    in bytes (``segment_cache_bytes``).
    """

    SEGMENT_MAX = 16 * 1024  # longer segments are not cached whole (their tokens still are)

    def __init__(self, ring: KeyRing, *, cache_size: int = 100_000,
                 segment_cache_bytes: int = 16 * 1024 * 1024):
        self.ring = ring
        self.cache_size = cache_size
        self.segment_cache_bytes = segment_cache_bytes
        self._cache: dict[str, tuple[str, int]] = {}
        self._escaped: dict[tuple[str, str], dict[bytes, bytes]] = {}
        self._skip: dict[bytes, int] = {}  # candidates left as they are, and why
        self._segments: dict[tuple[str, str], SegmentTable] = {}
        self._segment_bytes = 0
        self._generation = ring.generation

    def set_ring(self, ring: KeyRing) -> None:
        self.ring = ring
        self._clear()

    def _clear(self) -> None:
        self._cache.clear()
        self._escaped.clear()
        self._skip.clear()
        self._segments.clear()
        self._segment_bytes = 0
        self._generation = self.ring.generation

    def token(self, text: str) -> tuple[str, int]:
        """Plaintext and length of the token at the start of ``text`` (InvalidToken otherwise)."""
        if self.ring.generation != self._generation:
            self._clear()
        p = tokens.parse_header(text)
        exact = text[: p.total_len]
        hit = self._cache.get(exact)
        if hit is not None:
            return hit
        result = schemes.reveal_token(exact, self.ring)
        if p.scheme in _CACHED:
            if len(self._cache) >= self.cache_size:
                self._cache.clear()
            self._cache[exact] = result
        return result

    def scan(self, data: bytes, context: str, charset: str = "utf-8") -> tuple[bytes | None, RevealStats]:
        """Reveal every tagged token in ``data``. Returns (new bytes or None if unchanged, stats).

        Hot path, per body: one call in C (``substitute``) finds the segments (from a candidate that
        meets the start condition to the end of its string or text node) and looks each up: a
        segment seen before (same bytes, same context) maps to its revealed bytes and counts.
        Python-level work happens only for a body with a segment not seen before: split, then those
        segments token by token (with a per-token cache).
        """
        if self.ring.generation != self._generation:
            self._clear()
        end = SEGMENT_END[context]
        table = self._segment_table(context, charset)
        hit = substitute(data, end, table)  # every segment seen before: one call in C
        if hit is None:
            parts = split_segments(data, end)  # text, segment, text, ..., text
            segments = parts[1::2]
            news, packed = self._misses(segments, table, context, charset)
            parts[1::2] = news
            new = b"".join(parts)
        else:
            new, packed = hit
        stats = stats_of(packed)
        return (new if stats.revealed else None), stats

    def known(self, data: bytes, context: str, charset: str = "utf-8") -> tuple[bytes, int] | None:
        """``scan``'s steady state: when every segment of ``data`` was seen before under the current
        keys, its new bytes and packed counts (see ``stats_of``) from one call in C; None otherwise."""
        if self.ring.generation != self._generation:
            return None
        table = self._segments.get((context, charset))
        return None if table is None else substitute(data, SEGMENT_END[context], table)

    def _segment_table(self, context: str, charset: str) -> SegmentTable:
        """The segments seen in this context and charset."""
        table = self._segments.get((context, charset))
        if table is None:
            table = self._segments[(context, charset)] = SegmentTable()
        return table

    def _misses(self, segments: list[bytes], table: SegmentTable, context: str,
                charset: str) -> tuple[list[bytes], int]:
        """Some segments are not in the table: those token by token, in order
        (an e-mail token takes its domain from the text after it, which ends in the same segment).
        Returns every segment's revealed bytes and the packed counts of all; puts segments without
        aead tokens in the table (each of those is unique: keeping it would only push others out)."""
        out, total = [], 0
        for segment in segments:
            entry = table.get(segment)
            if entry is not None:
                out.append(entry[0])
                total += entry[1]
                continue
            sub = _CAND_SPLIT.split(segment)  # text, candidate, text, ..., text
            packed = self._tokens(sub, context, charset)
            new = b"".join(sub)
            out.append(new)
            total += packed
            if len(segment) > self.SEGMENT_MAX or packed >> 2 * _COUNT_BITS & _COUNT_MASK:  # aead
                continue
            size = len(segment) + len(new)
            if self._segment_bytes + size > self.segment_cache_bytes or len(table) >= self.cache_size:
                for t in self._segments.values():
                    t.clear()
                self._segment_bytes = 0
            table.put(segment, new, packed)
            self._segment_bytes += size
        return out, total

    def _tokens(self, parts: list[bytes], context: str, charset: str) -> int:
        """Reveal the candidates of ``parts`` (text, candidate, text, ...) in place, one by one.

        Returns the counts, packed (``_pack_counts``): revealed per scheme letter (d, w, a, e),
        truncated, invalid.
        """
        stats = RevealStats()
        fast = self._escaped.get((context, charset))
        if fast is None:
            fast = self._escaped[(context, charset)] = {}
        skip = self._skip
        cands = parts[1::2]
        hits = list(map(fast.get, cands))
        letters = bytes(map(_THIRD, cands)).lower()
        counts = dict.fromkeys(_COUNT_ORDER, 0)
        n_miss = hits.count(None)
        for ch in counts:
            counts[ch] = letters.count(ch)
        i = -1
        for _ in range(n_miss):
            i = hits.index(None, i + 1)
            counts[letters[i]] -= 1
            outcome = skip.get(cands[i])
            if outcome is not None:  # seen before: truncated, tampered or not a token at all
                hits[i] = cands[i]
                stats.truncated += outcome == _TRUNCATED
                stats.invalid += outcome == _INVALID
                continue
            hits[i], letter = self._slow(parts, 2 * i + 1, context, charset, fast, skip, stats)
            if letter:
                counts[letter] += 1
        parts[1::2] = hits
        return _pack_counts((*counts.values(), stats.truncated, stats.invalid))

    def _slow(self, parts: list[bytes], i: int, context: str, charset: str,
              fast: dict[bytes, bytes], skip: dict[bytes, int], stats: RevealStats) -> tuple[bytes, int]:
        """A candidate not in the cache: parse, decrypt, escape. Anything invalid stays as it was.

        Returns the replacement and the scheme letter of a revealed token (0: not revealed). An
        e-mail token also takes the ``@domain`` at the start of the following text (and, for a
        long token, the first domain label, which holds the token's rest).
        """
        raw = parts[i]
        cand = raw.decode("ascii")
        letter = cand[2].lower()
        try:
            p = tokens.parse_header(cand)
        except InvalidToken:
            self._remember(skip, raw, _NOT_TOKEN)
            return raw, 0  # not a token at all: an ordinary word that starts with "qx"
        after = parts[i + 1]
        domain = _EMAIL_DOMAIN.match(after) if letter == "e" else None
        if domain is not None and len(cand) < p.total_len:
            first = domain.group(1)
            if len(cand) + len(first) == p.total_len and _B32_LABEL.fullmatch(first):
                cand += first.decode("ascii")
        try:
            plain, n = self.token(cand)
        except InvalidToken:
            truncated = len(cand) < p.total_len
            stats.truncated += truncated
            stats.invalid += not truncated
            if letter != "e":  # an e-mail token's outcome depends on the text after it
                self._remember(skip, raw, _TRUNCATED if truncated else _INVALID)
            return raw, 0
        try:
            escaped = escape_for(context, plain, charset)
        except (UnicodeEncodeError, LookupError):
            stats.invalid += 1
            return raw, 0
        if letter == "e":
            if domain is not None:
                parts[i + 1] = after[domain.end() :]  # the address's domain is part of the token
            return escaped, ord(letter)
        new = escaped + raw[n:]
        if letter in "dw":
            self._remember(fast, raw, new)
        return new, ord(letter)

    def _remember(self, cache: dict[bytes, Any], raw: bytes, value: Any) -> None:
        if len(cache) >= self.cache_size:
            cache.clear()
        cache[raw] = value


def _has_upper_q(data: bytes) -> bool:
    """Whether ``data`` holds "QX" or "Qx" (a token whose case the SaaS changed).

    A token's letters carry case, and Graph's etags hold "CQAAA": a "Q" turns up in bodies now and
    then. The first ones are found by a one-byte search (memchr) each and their next byte checked;
    each costs about what the regex spends on 500 bytes (counted in instructions), so after one per
    KB of body the regex takes the rest. (Counting the "Q"s first, to choose, cost more than the
    regex: a count looks at every byte.)
    """
    budget = len(data) >> _UPPER_Q_SHIFT
    i = data.find(b"Q")
    while i >= 0:
        if data.startswith(_X, i + 1):
            return True
        budget -= 1
        if budget < 0:
            return _UPPER_Q.search(data, i) is not None
        i = data.find(b"Q", i + 1)
    return False


def reveal_positions(
    data: bytes, rules: Sequence[RevealRule], pack: Pack, ring: KeyRing
) -> tuple[bytes | None, RevealStats]:
    """Reveal untagged values (fpe) at the JSON paths a route names."""
    stats = RevealStats()
    start = min((i for i in (data.find(b"{"), data.find(b"[")) if i >= 0), default=-1)
    if start < 0:
        return None, stats
    try:
        nodes = jsonspan.walk(data, offset=start)
        key = ring.primary(pack.id)
    except Exception:  # not JSON after all, or no key: untagged values stay as they are
        return None, stats
    edits = []
    for rule in rules:
        for n in jsonspan.select(nodes, rule.jsonpath):
            if n.kind != "str":
                continue
            try:
                plain = rule.scheme.reveal(n.text(data), key)
            except InvalidToken:
                stats.invalid += 1
                continue
            edits.append((n.start, n.end, b'"' + _json_escape(plain, False).encode("utf-8") + b'"'))
            stats.revealed += 1
            stats.by_scheme[rule.scheme.name] = stats.by_scheme.get(rule.scheme.name, 0) + 1
    return (splice(data, edits) if edits else None), stats


@dataclass
class RevealOutcome:
    body: bytes | None  # new body (identity encoding) or None if unchanged
    stats: RevealStats
    error: str | None = None  # a code when the body could not be read (left untouched)


_MEDIA_MEMO: dict[str | None, tuple[str | None, str]] = {}


def _media(content_type: str | None) -> tuple[str | None, str]:
    """The escaping context and the charset (default utf-8) of a Content-Type, memoized: a SaaS
    answers with a handful of distinct values (bounded all the same)."""
    hit = _MEDIA_MEMO.get(content_type)
    if hit is None:
        charset = "utf-8"
        for part in (content_type or "").split(";")[1:]:
            k, _, v = part.partition("=")
            if k.strip().lower() == "charset" and v.strip():
                charset = v.strip().strip('"').lower()
        hit = (context_for(content_type), charset)
        if len(_MEDIA_MEMO) >= 256:
            _MEDIA_MEMO.clear()
        _MEDIA_MEMO[content_type] = hit
    return hit


def reveal_known(revealer: Revealer, body: bytes, content_type: str | None) -> tuple[bytes, int] | None:
    """``reveal_body``'s steady state, for a body without a content encoding and a route without reveal
    rules: its new bytes and packed counts when every segment in it was seen before; None when
    ``reveal_body`` must run."""
    context, charset = _media(content_type)
    if context is None or not body:
        return None
    return revealer.known(body, context, charset)


def reveal_body(
    revealer: Revealer,
    body: bytes,
    content_type: str | None,
    content_encoding: str | None,
    *,
    max_size: int,
    pack: Pack | None = None,
    reveal_rules: Sequence[RevealRule] = (),
) -> RevealOutcome:
    """Reveal a response body. The new body, if any, is returned decoded (identity)."""
    context, charset = _media(content_type)
    if context is None or not body:
        return RevealOutcome(None, RevealStats())
    try:
        encs = encoding.parse_content_encoding(content_encoding)
        data = encoding.decode(body, encs, max_size=max_size) if encs else body
    except BodyError as e:
        return RevealOutcome(None, RevealStats(), e.code)
    new, stats = revealer.scan(data, context, charset)
    if reveal_rules and pack is not None and context == "json":
        new2, st2 = reveal_positions(new if new is not None else data, reveal_rules, pack, revealer.ring)
        stats.add(st2)
        if new2 is not None:
            new = new2
    if new is None:
        return RevealOutcome(None, stats)
    return RevealOutcome(new, stats)
