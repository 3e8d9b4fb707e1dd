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


# A run: candidates that follow each other with nothing but a space (after an optional sentence mark)
# between them, the way the words scheme writes a phrase. The scan looks runs up whole.
_RUN_SEP = rb"[.,!?;:]?[ ]"


def _run_split(first: bytes) -> re.Pattern[bytes]:
    """Runs whose candidates begin with ``first``, each run one group (so ``split`` keeps them).

    The token's start condition (no letter or digit before it, unless an escape ends there: JSON
    ``\\n``, URL ``%0A``) is checked right after the run's first letter, by lookbehinds that include
    that letter: the pattern still begins with a literal, which keeps the regex engine's fast search,
    and a "qx..." glued to a word starts no run (no Python-level check). Later candidates of a run
    follow a space, so theirs holds.
    """
    after = [b"(?<![A-Za-z0-9]" + first + b")"]
    after += [b"(?<=" + e.encode() + first + b")" for e in tokens.ESCAPE_END[3:-1].split("|")]
    started = first + b"(?:" + b"|".join(after) + b")" + _REST
    return re.compile(b"(" + started + b"(?:" + _RUN_SEP + first + _REST + b")*+)")


_RUN_SPLIT = _run_split(b"[Qq]")
_RUN_SPLIT_LOWER_Q = _run_split(b"q")  # text without "QX", "Qx"
# The candidates of one run (its start condition already checked), each one group.
_CAND_SPLIT = re.compile(b"([Qq]" + _REST + b")")
_CAND_SPLIT_LOWER_Q = re.compile(b"(q" + _REST + b")")
_FIRST = operator.itemgetter(0)
_SECOND = operator.itemgetter(1)
_COUNT_ORDER = b"adwe"  # a run's counts: revealed per scheme letter in this order, then truncated, invalid
# A run's six counts travel packed into one int, 32 bits each (a body of at most 32 MiB holds far
# fewer than 2**32 tokens), so that a body's totals are one ``sum`` in C over its runs.
_COUNT_BITS = 32
_COUNT_MASK = (1 << _COUNT_BITS) - 1
_UNCACHEABLE_RUN = re.compile(rb"(?:\A|[ ])[Qq][Xx][AaEe]")  # aead (unique) or e-mail (its outcome depends on what follows)
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
    return [(packed >> (_COUNT_BITS * k)) & _COUNT_MASK for k in range(6)]


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
    token, the outcome of candidates left as they are, and the revealed bytes of whole runs of
    deterministic tokens (a phrase of word tokens: a subject, a sentence), bounded in entries and in
    bytes (``run_cache_bytes``).
    """

    SCHEME_NAMES = {"a": "aead", "d": "deterministic", "w": "words", "e": "email"}
    RUN_MAX = 16 * 1024  # longer runs are not cached whole (their tokens still are)

    def __init__(self, ring: KeyRing, *, cache_size: int = 100_000, run_cache_bytes: int = 16 * 1024 * 1024):
        self.ring = ring
        self.cache_size = cache_size
        self.run_cache_bytes = run_cache_bytes
        self._cache: dict[str, tuple[str, int]] = {}
        self._escaped: dict[tuple[str, str], dict[bytes, bytes]] = {}
        self._skip: dict[bytes, int] = {}  # candidates left as they are, and why
        self._runs: dict[tuple[str, str], dict[bytes, tuple[bytes, int]]] = {}
        self._run_bytes = 0
        self._generation = ring.generation

    def set_ring(self, ring: KeyRing) -> None:
        self.ring = ring
        self._clear()

    def _clear(self) -> None:
        self._cache.clear()
        self._escaped.clear()
        self._skip.clear()
        self._runs.clear()
        self._run_bytes = 0
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

        Hot path, per body: one regex split in C into text and runs of candidates (the token grammar
        with its start condition), one dict look-up per run: a run of deterministic tokens seen
        before (same bytes, same context) maps to its revealed bytes and counts. Python-level work
        happens only for runs not seen before, token by token (with a per-token cache).
        """
        stats = RevealStats()
        # The gateway writes "qx" in lower case; an upper-case "Q" appears only where the SaaS changed
        # the case. Without one, a literal "q" lets the regex engine skip text fast. Every pass over
        # the body counts here: one search, one split, one join.
        upper = _has_upper_q(data)
        if self.ring.generation != self._generation:
            self._clear()
        parts = (_RUN_SPLIT if upper else _RUN_SPLIT_LOWER_Q).split(data)  # text, run, text, run, ..., text
        if len(parts) == 1:
            return None, stats
        key = (context, charset)
        runs = self._runs.get(key)
        if runs is None:
            runs = self._runs[key] = {}
        hits = list(map(runs.get, parts[1::2]))
        if None in hits:
            self._misses(parts, hits, runs, upper, context, charset)
        totals = _unpack_counts(sum(map(_SECOND, hits)))
        for ch, n in zip(_COUNT_ORDER, totals):
            if n:
                stats.by_scheme[self.SCHEME_NAMES[chr(ch)]] = n
        stats.revealed = sum(totals[:4])
        stats.truncated, stats.invalid = totals[4], totals[5]
        if not stats.revealed:
            return None, stats
        parts[1::2] = map(_FIRST, hits)
        return b"".join(parts), stats

    def _misses(self, parts: list[bytes], hits: list[Any], runs: dict[bytes, Any],
                upper: bool, context: str, charset: str) -> None:
        """Runs not in the cache: token by token, in order (an e-mail token takes the domain from the
        text after its run). Fills ``hits``; caches what may be cached."""
        split = _CAND_SPLIT if upper else _CAND_SPLIT_LOWER_Q
        for i, hit in enumerate(hits):
            if hit is not None:
                continue
            j = 2 * i + 1
            run = parts[j]
            sub = split.split(run)  # "", candidate, separator, ..., candidate, ""
            sub[0] = parts[j - 1]  # the text around the run: an e-mail's domain is in the one after it
            sub[-1] = parts[j + 1]
            counts = self._tokens(sub, context, charset)
            parts[j + 1] = sub[-1]
            new = b"".join(sub[1:-1])
            hits[i] = (new, counts)
            if len(run) > self.RUN_MAX or _UNCACHEABLE_RUN.search(run):
                continue
            size = len(run) + len(new)
            if self._run_bytes + size > self.run_cache_bytes or len(runs) >= self.cache_size:
                for cache in self._runs.values():
                    cache.clear()
                self._run_bytes = 0
            runs[run] = (new, counts)
            self._run_bytes += size

    def _tokens(self, parts: list[bytes], context: str, charset: str) -> int:
        """Reveal the candidates of ``parts`` (text, candidate, text, ...) in place, one by one.

        Returns the counts, packed (``_pack_counts``): revealed per scheme letter (a, d, w, e),
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
