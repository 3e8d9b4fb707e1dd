"""Protect a request: find the fields a route selects and replace them with tokens.

Pure: bytes and header facts in, an ``Outcome`` out (new body, path and header values, and actions
that name rules and schemes but never hold a value). Any failure raises a ``CloakgateError``; the
caller refuses the request. Nothing here decides to forward a plaintext value except a rule's own
``on_missing: skip`` or ``on_malformed: skip``.
"""

from __future__ import annotations

import base64
import binascii
import re
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from . import jsonspan, schemes
from .codecs import encoding, form, media_type, multipart, splice
from .errors import BodyError, CloakgateError, FieldError
from .keyring import DataKey, KeyRing
from .rules import FieldRule, Pack, Route

Headers = Iterable[tuple[str, str]]


@dataclass
class Outcome:
    pack: str
    route: str | None
    body: bytes | None = None  # new wire body (re-encoded), None if unchanged
    path: str | None = None  # new path with query, None if unchanged
    headers: dict[str, str] = field(default_factory=dict)  # header name -> new value
    counts: dict[tuple[str, str], int] = field(default_factory=dict)  # (field label, scheme) -> n; a dict:
    # every request makes an Outcome, and a Counter costs 20 times a dict to create
    kid: str | None = None
    # the same pack, key ring, method and path give the same outcome to a request without a body
    path_only: bool = False

    @property
    def protected(self) -> int:
        return sum(self.counts.values())

    @property
    def unchanged(self) -> bool:
        """The request goes out as it came in."""
        return self.body is None and self.path is None and not self.headers and not self.counts

    @property
    def schemes(self) -> list[str]:
        return sorted({s for _, s in self.counts})


def content_type_param(content_type: str | None, name: str) -> str | None:
    for part in (content_type or "").split(";")[1:]:
        k, _, v = part.partition("=")
        if k.strip().lower() == name:
            return v.strip().strip('"').lower() or None
    return None


def header_get(headers: Headers, name: str) -> list[str]:
    n = name.lower()
    return [v for k, v in headers if k.lower() == n]


# An OData comparison with a string literal: `subject eq 'x'`, `a/address eq 'x'` (inside any()).
_ODATA_CMP = re.compile(r"([A-Za-z_][\w/]*)(\s+(?:eq|ne)\s+)'((?:[^']|'')*)'", re.IGNORECASE)
_KQL_KEEP = re.compile(r"\b(?:AND|OR|NOT|NEAR)\b|\w+(?=:)|\w+")


def _missing(rule: FieldRule) -> None:
    if rule.on_missing == "refuse":
        raise FieldError(f"selected field {rule.label} is absent", code="cloakgate.field.missing")


def _query_lacks(query: str, rules: Sequence[FieldRule]) -> bool:
    """Whether none of the query parameters ``rules`` select can be in ``query``: plain ASCII without
    escapes, and no selector's name anywhere in its text (a parameter absent from the text is absent).
    If so, a rule that requires its parameter refuses the request here."""
    if not query.isascii() or "%" in query or "+" in query or any(r.selector in query for r in rules):
        return False
    for r in rules:
        _missing(r)
    return True


class _Run:
    """State of one protection run: the pack, its primary key, and what was done."""

    def __init__(self, pack: Pack, route: Route, key: DataKey, ring: KeyRing, rand: schemes.Rand, out: Outcome):
        self.pack = pack
        self.route = route
        self.key = key
        self.ring = ring
        self.rand = rand
        self.out = out

    # --- one value -------------------------------------------------------------------------------

    def malformed(self, rule: FieldRule, code: str = "cloakgate.field.malformed") -> None:
        if rule.on_malformed == "refuse":
            raise FieldError(f"selected field {rule.label} cannot be protected", code=code)

    def value(self, rule: FieldRule, value: str) -> str | None:
        """The protected form of ``value`` under ``rule``; None to leave it untouched."""
        if value == "":
            return None
        if rule.fields:
            return self.nested(rule, value)
        scheme = rule.scheme
        assert scheme is not None
        try:
            if rule.grammar == "plain":
                new = scheme.protect(value, self.key, self.ring, self.rand)
            else:
                new = self.transform(rule, scheme, value)
        except FieldError as e:
            if e.code == "cloakgate.field.too_long":
                raise
            self.malformed(rule, e.code)
            return None
        if rule.max_length is not None and len(new) > rule.max_length:
            raise FieldError(f"protected {rule.label} exceeds its max_length", code="cloakgate.field.too_long")
        counts, key = self.out.counts, rule.count_key
        counts[key] = counts.get(key, 0) + 1
        return new

    def transform(self, rule: FieldRule, scheme: schemes.Scheme, value: str) -> str:
        if rule.grammar == "odata":
            return _ODATA_CMP.sub(lambda m: self._odata(rule, scheme, m), value)
        if rule.grammar == "kql":
            assert isinstance(scheme, schemes.Words)
            return _KQL_KEEP.sub(
                lambda m: m.group()
                if m.group() in ("AND", "OR", "NOT", "NEAR") or value[m.end() : m.end() + 1] == ":"
                else scheme.word(m.group(), self.key, self.ring),
                value,
            )
        return self.protect(scheme, value)  # a plain value (value() calls the scheme itself)

    def _odata(self, rule: FieldRule, scheme: schemes.Scheme, m: re.Match[str]) -> str:
        prop, op, lit = m.groups()
        if rule.properties is not None and prop.rsplit("/", 1)[-1].lower() not in rule.properties:
            return m.group()
        return prop + op + "'" + self.protect(scheme, lit.replace("''", "'")).replace("'", "''") + "'"

    def protect(self, scheme: schemes.Scheme, value: str) -> str:
        return scheme.protect(value, self.key, self.ring, self.rand)

    def outputs(self, rule: FieldRule) -> dict[bytes, bytes]:
        """Protected JSON string contents by original contents, for a rule whose outputs may be cached
        (``FieldRule.cache_outputs``): names and subjects repeat. Memory only, per key handle."""
        by_rule: dict[int, dict[bytes, bytes]] = self.key.cached("protect/outputs", dict)
        out = by_rule.get(rule.serial)
        if out is None:
            out = by_rule[rule.serial] = {}
        return out

    def nested(self, rule: FieldRule, value: str) -> str | None:
        """Undo the rule's decode layers, protect the inner document, redo the layers."""
        layers = rule.decode
        if not layers:  # nested rules without decode layers select inside a container, not a string
            self.malformed(rule)
            return None
        text: str | bytes = value
        try:
            for layer in layers[:-1]:
                if layer == "url":
                    text = unquote(text if isinstance(text, str) else text.decode("utf-8"), errors="strict")
                elif layer == "base64":
                    text = base64.b64decode(text, validate=True)
            inner = text.encode("utf-8") if isinstance(text, str) else text
        except (ValueError, UnicodeError, binascii.Error):
            self.malformed(rule, "cloakgate.field.bad_encoding")
            return None
        kind = layers[-1]
        try:
            new_inner = (self.json(inner, rule.fields, rule.json_selector) if kind == "json"
                         else self.form(inner, rule.fields, "utf-8"))
        except BodyError as e:
            self.malformed(rule, e.code)
            return None
        if new_inner is None:
            return None
        out: str | bytes = new_inner
        for layer in reversed(layers[:-1]):
            if layer == "base64":
                out = base64.b64encode(out if isinstance(out, bytes) else out.encode("utf-8"))
            elif layer == "url":
                out = quote(out if isinstance(out, str) else out.decode("utf-8"), safe="-_.!~*'()")
        return out.decode("utf-8") if isinstance(out, bytes) else out

    # --- documents -------------------------------------------------------------------------------

    def json(self, data: bytes, rules: Sequence[FieldRule], selector: jsonspan.Selector) -> bytes | None:
        """Protect the selected values of a JSON text; None if nothing changed.

        What the rules select is a plan of the text's shape (``jsonspan.Shape``): built from a walk
        the first time a shape is seen, replayed for the next text of that shape.
        """
        if not data.strip():
            for r in rules:
                _missing(r)
            return None
        shape = jsonspan.shape(data, selector.shapes)
        plan = selector.shapes.get(shape.key)
        if plan is None:
            plan = _json_plan(data, shape, rules, selector)
            selector.remember_shape(shape.key, plan)
        contents: dict[int, bytes] = {}  # string index -> its protected contents
        nested: list[tuple[int, int, bytes]] = []  # containers protected by their own rules
        parts, counts = shape.parts, self.out.counts
        for rule, items in zip(rules, plan, strict=True):  # type: ignore[call-overload]
            if items is None:
                _missing(rule)
                continue
            outputs = self.outputs(rule) if rule.cache_outputs else None
            for item in items:
                if type(item) is int:
                    if item < 0:
                        self.malformed(rule)
                        continue
                    if item in contents:
                        continue  # an earlier rule already protected this very value
                    raw = parts[item]
                    hit = outputs.get(raw) if outputs is not None else None
                    if hit is not None:  # this rule protected this very string before, under this key
                        contents[item] = hit
                        counts[rule.count_key] = counts.get(rule.count_key, 0) + 1
                        continue
                    new_value = self.value(rule, shape.value(item))
                    if new_value is not None:
                        contents[item] = enc = jsonspan.escape_string_body(new_value)
                        if outputs is not None and len(raw) <= _OUTPUT_RAW_MAX:
                            if len(outputs) >= _OUTPUT_CACHE_SIZE:
                                outputs.clear()
                            outputs[raw] = enc
                    continue
                s_part, s_off, e_part, e_off = item
                start, end = shape.starts[s_part] + s_off, shape.starts[e_part] + e_off
                if all(n[0] != start or n[1] != end for n in nested):
                    new = self.json(data[start:end], rule.fields, rule.json_selector)
                    if new is not None:
                        nested.append((start, end, new))
        if not nested:
            return shape.replace(contents) if contents else None
        edits = nested + [(*shape.literal(i), b'"' + c + b'"') for i, c in contents.items()]
        spans = sorted(e[:2] for e in edits)
        if any(b[0] < a[1] for a, b in zip(spans, spans[1:])):  # a value inside a container another rule took
            raise CloakgateError("two rules select overlapping values", code="cloakgate.rules.overlap")
        return splice(data, edits)

    def form(self, data: bytes, rules: Sequence[FieldRule], charset: str, *, query: bool = False) -> bytes | None:
        fields = form.parse(data, charset)
        current: dict[int, str] = {}  # field index -> value so far: several rules may share one field
        for rule in rules:
            hits = [f for f in fields if f.name == rule.selector]
            if not hits:
                _missing(rule)
                continue
            for f in hits:
                new = self.value(rule, current.get(f.index, f.value))
                if new is not None:
                    current[f.index] = new
        edits = []
        for f in fields:
            if f.index in current:
                new = current[f.index]
                enc = quote(new, safe="-._~").encode("ascii") if query else form.encode_value(new, charset)
                edits.append((f.value_start, f.value_end, enc if f.has_equals else b"=" + enc))
        return splice(data, edits) if edits else None

    def multipart(self, data: bytes, rules: Sequence[FieldRule], content_type: str) -> bytes | None:
        boundary = multipart.boundary_from_content_type(content_type)
        parts = multipart.parse(data, boundary)
        edits: list[tuple[int, int, bytes]] = []
        for rule in rules:
            hits = [p for p in parts if p.name == rule.selector]
            if not hits:
                _missing(rule)
                continue
            for p in hits:
                if p.transfer_encoding not in (None, "7bit", "8bit", "binary"):
                    raise BodyError("multipart part has an unsupported transfer encoding", code="cloakgate.body.unknown_encoding", status_hint=415)
                charset = p.charset or "utf-8"
                try:
                    text = data[p.body_start : p.body_end].decode(charset)
                except (UnicodeDecodeError, LookupError):
                    self.malformed(rule, "cloakgate.body.bad_charset")
                    continue
                new = self.value(rule, text)
                if new is not None:
                    enc = new.encode(charset)
                    multipart.check_replacement(boundary, enc)
                    edits.append((p.body_start, p.body_end, enc))
        return splice(data, edits) if edits else None


_OUTPUT_RAW_MAX = 256  # longer strings (a mail body) rarely repeat whole: not cached
_OUTPUT_CACHE_SIZE = 20_000  # per rule and key
_MALFORMED = -1  # a plan item: the rule selects a number or a boolean
Plan = tuple[tuple[int | tuple[int, int, int, int], ...] | None, ...]


def _json_plan(data: bytes, shape: jsonspan.Shape, rules: Sequence[FieldRule], selector: jsonspan.Selector) -> Plan:
    """What each rule selects in a text of this shape, by position in ``shape.parts``.

    Per rule: None when it selects nothing but nulls (missing); else, in document order, the string
    literals to protect (part indexes; a container's string leaves when the rule has no fields of its
    own), ``_MALFORMED`` for a number or boolean, and for a container with nested rules its span as
    (part, offset, part, offset): offsets into gaps, which every text of the shape shares.
    """
    nodes = jsonspan.walk(data, validated=True)
    starts = shape.starts
    literal = {starts[i] - 1: i for i in range(1, len(shape.parts), 2)}  # opening quote -> string

    def ref(pos: int, end: bool) -> tuple[int, int]:
        i = bisect_right(starts, pos - 1 if end else pos) - 1  # the gap holding the bracket
        return i, pos - starts[i]

    plan: list[tuple[int | tuple[int, int, int, int], ...] | None] = []
    for rule, selected in zip(rules, selector.select(nodes), strict=True):
        hits = [n for n in selected if n.kind != "null"]
        if not hits:
            plan.append(None)
            continue
        items: list[int | tuple[int, int, int, int]] = []
        for n in hits:
            if n.kind in ("obj", "arr"):
                if rule.fields:
                    items.append(ref(n.start, False) + ref(n.end, True))
                else:
                    items.extend(literal[t.start] for t in jsonspan.leaves_under(nodes, n))
            elif n.kind == "str":
                items.append(literal[n.start])
            else:
                items.append(_MALFORMED)
        plan.append(tuple(items))
    return tuple(plan)


def _body_kind(mt: str) -> str | None:
    if mt == "application/x-www-form-urlencoded":
        return "form"
    if mt.startswith("multipart/"):
        return "multipart"
    if mt.endswith("/json") or mt.endswith("+json"):
        return "json"
    return None


def protect_request(
    pack: Pack,
    method: str,
    path: str,
    headers: Headers,
    body: bytes,
    ring: KeyRing,
    rand: schemes.Rand,
) -> Outcome:
    """Protect one request to a host of ``pack``. Raises CloakgateError to refuse it."""
    npath, hit = pack.route_for_request(method, path)
    if hit is None:
        if pack.unmatched == "refuse":
            raise CloakgateError("no route of this pack allows this request", code="cloakgate.route.unmatched", status_hint=403)
        return Outcome(pack.id, None, path_only=True)
    route, match = hit
    out = Outcome(pack.id, route.name, path_only=route.path_only)
    if not route.fields:
        return out
    key = ring.primary(pack.id)  # a pack without a key fails closed on every route that selects fields
    out.kid = key.kid
    by_where = route.by_where
    base, sep, query = path.partition("?")
    if route.query_only and _query_lacks(query, by_where["query"]):  # the common read: a GET without
        return out  # a selected parameter has nothing more to do
    if route.body_kind is not None or "header" in route.by_where:
        headers = tuple(headers)  # read several times below: an iterator would be empty the second time
    run = _Run(pack, route, key, ring, rand, out)

    kind = route.body_kind
    if kind is not None:
        ct = (header_get(headers, "content-type") or [""])[0]
        mt = media_type(ct)
        if body and route.content_types and mt not in route.content_types:
            raise BodyError("content type not allowed on this route", code="cloakgate.body.unexpected_content_type", status_hint=415)
        declared = _body_kind(mt)
        if body and declared is not None and declared != kind:
            raise BodyError("body type does not match the route", code="cloakgate.body.unexpected_content_type", status_hint=415)
        if len(body) > pack.max_body:
            raise BodyError("request body exceeds the limit", code="cloakgate.body.too_large", status_hint=413)
        encs = encoding.parse_content_encoding(", ".join(header_get(headers, "content-encoding")) or None)
        data = encoding.decode(body, encs, max_size=pack.max_body) if encs and body else body
        if kind == "json":
            new = run.json(data, by_where["json"], route.json_selector)
        elif kind == "form":
            charset = content_type_param(ct, "charset") or "utf-8"
            new = run.form(data, by_where["form"], charset)
        else:
            if not body:
                for r in by_where["multipart"]:
                    _missing(r)
                new = None
            else:
                new = run.multipart(data, by_where["multipart"], ct)
        if new is not None:
            out.body = encoding.encode(new, encs) if encs else new

    new_query = None
    if "query" in by_where:
        q_rules = by_where["query"]
        if not _query_lacks(query, q_rules):
            q = run.form(query.encode("utf-8", "surrogateescape"), q_rules, "utf-8", query=True)
            if q is not None:
                new_query = q.decode("ascii")
    new_base = None
    if "path" in by_where:
        edits = []
        for rule in by_where["path"]:
            s, e = match.span(rule.selector)
            new_seg = run.value(rule, match.group(rule.selector))
            if new_seg is not None:
                edits.append((s, e, quote(new_seg, safe="@-._~!$&'()*+,;=:")))
        if edits:
            new_base = npath
            for s, e, v in sorted(edits, reverse=True):
                new_base = new_base[:s] + v + new_base[e:]
    if new_base is not None or new_query is not None:
        out.path = (new_base if new_base is not None else base) + (
            "?" + (new_query if new_query is not None else query) if sep else ""
        )

    for rule in by_where.get("header", ()):
        values = header_get(headers, rule.selector)
        if not values:
            _missing(rule)
            continue
        if len(values) > 1:
            raise BodyError("a protected header appears more than once", code="cloakgate.header.repeated")
        new_h = run.value(rule, values[0])
        if new_h is not None:
            out.headers[rule.selector] = new_h
    return out
