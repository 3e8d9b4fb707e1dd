"""JSON with byte spans, and compiled JSONPath selectors over it.

``walk`` validates a JSON document with the C parser, then tokenizes it once (the C regex engine
does the scanning) and reports every value with its concrete path and its byte span, so replacements are spliced into the original bytes:
key order, escapes, numbers and duplicate keys stay exactly as the client sent them. Duplicate keys
are all reported (a SaaS parser may keep the first while Python keeps the last: both get protected).

``shape`` validates a text the same way and cuts it at its quotes; its key names the text's structure
(everything but the string values), so what a walk found in one text is replayed on the next text of
that shape without walking it (protect does this per route).

``compile_path`` understands the JSONPath subset rule packs need (RFC 9535 names): ``$``, ``.name``,
``['name']``, ``[n]``, ``[*]``, ``.*`` and recursive descent ``..name`` / ``..*`` / ``..[*]``.
Keys are compared case-insensitively unless the pack asks otherwise (Graph and OWA keys are).
"""

from __future__ import annotations

import json
import re
from itertools import accumulate, compress, count, repeat
from operator import add
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from .errors import BodyError, RuleError

# After validation the document is known to be JSON, so the lexer only needs to tell tokens apart:
# strings, container brackets and scalars. Commas, colons and whitespace are skipped by the search.
_LEX = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\]]|[^\s,:{}\[\]"]+')  # strings: unrolled loop
# The same tokens by one split: text between tokens and tokens alternate, and the tokens' offsets
# follow from the running sum of the parts' lengths (no match object per token).
_LEX_SPLIT = re.compile(b"(" + _LEX.pattern + b")")
_BOM = b"\xef\xbb\xbf"
# The contents of a string literal, possessive (no backtracking); after validation every quote
# outside a string opens one. split() drops the quotes and keeps the contents: as bytes.split(b'"').
_STRING_SPLIT = re.compile(rb'"([^"\\]*+(?:\\.[^"\\]*+)*+)"')
# What ``bytes.translate`` deletes to leave only the control characters JSON forbids: raw inside a
# string, any (_NOT_CONTROL); anywhere, all but tab, LF and CR (_NOT_STRAY). One table look-up per
# byte in C, a fifth of a character-class regex search's cost.
_NOT_CONTROL = bytes(range(0x20, 0x100))
_NOT_STRAY = _NOT_CONTROL + b"\t\n\r"
_BAD_ESCAPE = re.compile(rb'\\(?![\\"/bfnrt]|u[0-9A-Fa-f]{4})')  # a backslash that starts no JSON escape
_WS_COLONS = (b" :", b"\t:", b"\n:", b"\r:")  # how whitespace before a colon ends

Path = tuple[str | int, ...]


class Node(NamedTuple):
    path: Path
    kind: str  # "str" | "num" | "bool" | "null" | "obj" | "arr"
    start: int  # byte span of the whole value (strings include their quotes)
    end: int

    def text(self, data: bytes) -> str:
        """The decoded value of a string node."""
        return string_at(data, self.start, self.end)


def string_at(data: bytes, start: int, end: int) -> str:
    """The value of the JSON string literal ``data[start:end]`` (quotes included), already validated."""
    return contents_value(data[start + 1 : end - 1])


def contents_value(raw: bytes) -> str:
    """The value of a validated JSON string from its contents (without the quotes)."""
    return raw.decode("utf-8") if b"\\" not in raw else json.loads(b'"' + raw + b'"')


def _malformed() -> BodyError:
    return BodyError("body is not valid JSON", code="cloakgate.body.malformed_json")


def _too_complex(what: str) -> BodyError:
    return BodyError(f"JSON {what}", code="cloakgate.body.too_complex")


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


_DECODE = json.JSONDecoder(parse_constant=_no_constant).decode  # one decoder (json.loads makes one per call)


def validate(data: bytes, offset: int = 0) -> None:
    """Raise BodyError unless ``data[offset:]`` is one JSON value in UTF-8 (RFC 8259), by the C parser."""
    try:
        _DECODE((data[offset:] if offset else data).decode("utf-8"))
    except RecursionError:
        raise _too_complex("nests too deep") from None
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        raise _malformed() from None


_SCALAR_KIND = {ord("t"): "bool", ord("f"): "bool", ord("n"): "null"}


def walk(
    data: bytes, *, max_depth: int = 64, max_nodes: int = 200_000, offset: int = 0, validated: bool = False
) -> list[Node]:
    """All values of a JSON text with their paths and spans (document order, containers first).

    The C parser validates the whole text first (BodyError cloakgate.body.malformed_json otherwise;
    ``validated``: ``shape`` did it already); then one regex split finds the tokens and a small loop
    tracks where each value sits.
    """
    if data.startswith(_BOM, offset):
        offset += 3
    if not validated:
        validate(data, offset)
    parts = _LEX_SPLIT.split(data[offset:] if offset else data)  # gap, token, gap, token, ..., gap
    ends = list(accumulate(map(len, parts), initial=offset))  # ends[i + 1]: where parts[i] ends
    nodes: list[Node] = []
    append = nodes.append
    new = tuple.__new__
    stack: list[tuple[Path | None, bool, int, int]] = []
    prefix: Path | None = None  # path of the innermost open container (None: at the top level)
    in_obj = want_key = False
    idx = 0
    key: str = ""
    j = 0
    for tok in parts[1::2]:
        j += 2
        s, e = ends[j - 1], ends[j]
        c = tok[0]
        if want_key and c == 0x22:  # an object key
            raw = tok[1:-1]
            key = raw.decode("utf-8") if 0x5C not in raw else json.loads(tok)
            want_key = False
            continue
        if c == 0x7D or c == 0x5D:  # '}' or ']'
            prefix, in_obj, idx, i = stack.pop()
            want_key = in_obj
            n = nodes[i]
            nodes[i] = new(Node, (n[0], n[1], n[2], e))
            continue
        if in_obj:
            path = prefix + (key,)  # type: ignore[operator]
            want_key = True
        elif prefix is not None:
            path = prefix + (idx,)
            idx += 1
        else:
            path = ()
        if len(nodes) >= max_nodes:
            raise _too_complex("has too many values")
        if c == 0x22:
            append(new(Node, (path, "str", s, e)))
        elif c == 0x7B or c == 0x5B:  # '{' or '['
            if len(stack) >= max_depth:
                raise _too_complex("nests too deep")
            stack.append((prefix, in_obj, idx, len(nodes)))
            append(new(Node, (path, "obj" if c == 0x7B else "arr", s, -1)))
            prefix, in_obj, idx = path, c == 0x7B, 0
            want_key = in_obj
        else:
            append(new(Node, (path, _SCALAR_KIND.get(c, "num"), s, e)))
    return nodes


class Shape:
    """A validated JSON text cut at its quotes, and what its structure is.

    ``parts`` alternate: gap, string contents, gap, ..., gap (the text split at every quote that
    opens or closes a string: strings at the odd indexes). ``key`` is the text without its string
    values (the gaps, and the object keys): two texts with equal keys have the same paths, kinds and
    nesting, and their values sit at the same parts. Documents of one API repeat their shapes, so
    what a caller derives from a walk (which strings the rules select) can be memoized by ``key``
    and replayed on the next text of that shape, which costs no walk and no offsets.
    """

    __slots__ = ("key", "parts", "offset", "_starts")

    def __init__(self, key: bytes, parts: list[bytes], offset: int):
        self.key = key
        self.parts = parts
        self.offset = offset  # 3 after a byte order mark
        self._starts: list[int] | None = None

    @property
    def starts(self) -> list[int]:
        """Byte offset of each part (a string's: after its quote), and one more: the end."""
        if self._starts is None:
            st = list(map(add, accumulate(map(len, self.parts), initial=self.offset), count()))
            st[-1] -= 1  # + one quote per part, none after the last
            self._starts = st
        return self._starts

    def literal(self, i: int) -> tuple[int, int]:
        """The span of string ``i`` with its quotes."""
        st = self.starts
        return st[i] - 1, st[i + 1]

    def value(self, i: int) -> str:
        """The value of string ``i``."""
        return contents_value(self.parts[i])

    def replace(self, contents: dict[int, bytes]) -> bytes:
        """The text with the contents of some strings replaced (escaped JSON, without quotes)."""
        parts = self.parts.copy()
        for i, c in contents.items():
            parts[i] = c
        text = b'"'.join(parts)
        return _BOM + text if self.offset else text


def shape(data: bytes, known: Container[bytes] = ()) -> Shape:
    """Validate ``data`` (BodyError as ``walk``) and cut it at the quotes of its strings.

    ``known``: keys of shapes whose texts were validated before. A text of a known shape has those
    very gaps and object keys, all valid; it is valid JSON when its strings are (UTF-8, no raw control
    character, only JSON's escapes), which three searches in C tell without building its values.
    Anything else is validated whole.
    """
    offset = 3 if data.startswith(_BOM) else 0
    text = data[offset:] if offset else data
    # Without an escaped quote every quote opens or closes a string: bytes.split finds them all. In a
    # text that is not JSON the cut may go astray; its gaps then hold quotes, which no valid gap does.
    parts = text.split(b'"') if b'\\"' not in text else _STRING_SPLIT.split(text)
    gaps = parts[0::2]
    joined = b"\x00".join(gaps)  # valid JSON has no raw control character anywhere: NUL and SOH separate
    # A string is an object key when the gap after it starts with ':' (maybe after whitespace).
    if not any(map(joined.__contains__, _WS_COLONS)):
        keys = compress(parts[1::2], map(bytes.startswith, gaps[1:], repeat(b":")))
    else:
        keys = (k for k, gap in zip(parts[1::2], gaps[1:]) if gap.lstrip()[:1] == b":")
    key = joined + b"\x01" + b"\x00".join(keys)
    # An odd number of quotes (an even number of parts) leaves the last string open: its gaps and keys
    # may be those of a valid text all the same.
    if key not in known or not len(parts) & 1 or not _strings_valid(text, parts):
        validate(data, offset)
    return Shape(key, parts, offset)


def _strings_valid(text: bytes, parts: list[bytes]) -> bool:
    """Whether the strings of ``parts`` are valid JSON string contents, in a text of valid UTF-8
    without a raw control character between its strings either (a NUL there would make its gaps,
    joined with NULs, read like the gaps of another text)."""
    if text.translate(None, _NOT_STRAY):
        return False
    if not text.isascii():
        try:
            text.decode("utf-8")
        except UnicodeDecodeError:
            return False
    # No content ends in an escaping backslash (it would have escaped its closing quote): joined,
    # every escape stays inside its own string.
    contents = b"".join(parts[1::2])
    return not contents.translate(None, _NOT_CONTROL) and _BAD_ESCAPE.search(contents) is None


# --- JSONPath ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Seg:
    op: str  # "key" | "idx" | "any"
    value: str | int | None = None
    deep: bool = False  # preceded by ".." (recursive descent)


_SEG = re.compile(
    r"""(\.\.|\.)?(?:
        \[\s*'((?:[^'\\]|\\.)*)'\s*\]      # ['name']
      | \[\s*"((?:[^"\\]|\\.)*)"\s*\]      # ["name"]
      | \[\s*(-?\d+)\s*\]                  # [3]
      | \[\s*\*\s*\]                       # [*]
      | (\*)                               # .*
      | ([A-Za-z_@$\u0080-\uffff][\w@$\-\u0080-\uffff]*)  # .name
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class JsonPath:
    text: str
    segs: tuple[Seg, ...]
    case_insensitive: bool
    _memo: dict[Path, bool] = field(default_factory=dict, repr=False, compare=False, hash=False)

    def matches(self, path: Path) -> bool:
        """Whether a concrete path matches. Documents of one API repeat their shapes: memoized."""
        hit = self._memo.get(path)
        if hit is None:
            hit = _match(self.segs, 0, path, 0, self.case_insensitive)
            if len(self._memo) >= 20_000:
                self._memo.clear()
            self._memo[path] = hit
        return hit


def _seg_ok(seg: Seg, step: str | int, ci: bool) -> bool:
    if seg.op == "any":
        return True
    if seg.op == "idx":
        return isinstance(step, int) and step == seg.value
    if not isinstance(step, str):
        return False
    return step.lower() == seg.value if ci else step == seg.value


def _match(segs: tuple[Seg, ...], i: int, path: Path, j: int, ci: bool) -> bool:
    if i == len(segs):
        return j == len(path)
    seg = segs[i]
    if seg.deep:
        return any(_seg_ok(seg, path[k], ci) and _match(segs, i + 1, path, k + 1, ci) for k in range(j, len(path)))
    return j < len(path) and _seg_ok(seg, path[j], ci) and _match(segs, i + 1, path, j + 1, ci)


def compile_path(text: str, *, case_insensitive: bool = True) -> JsonPath:
    s = text.strip()
    if not s.startswith("$"):
        raise RuleError("a JSONPath starts with $", code="cloakgate.rules.bad_jsonpath")
    pos = 1
    segs: list[Seg] = []
    while pos < len(s):
        m = _SEG.match(s, pos)
        if m is None or m.end() == pos:
            raise RuleError(f"cannot parse JSONPath at character {pos}", code="cloakgate.rules.bad_jsonpath")
        dots, q1, q2, idx, star, name = m.groups()
        if dots is None and not m.group(0).startswith("["):
            raise RuleError(f"cannot parse JSONPath at character {pos}", code="cloakgate.rules.bad_jsonpath")
        deep = dots == ".."
        if q1 is not None or q2 is not None:
            raw = q1 if q1 is not None else q2
            key = re.sub(r"\\(.)", r"\1", raw)
            segs.append(Seg("key", key.lower() if case_insensitive else key, deep))
        elif idx is not None:
            segs.append(Seg("idx", int(idx), deep))
        elif name is not None:
            segs.append(Seg("key", name.lower() if case_insensitive else name, deep))
        else:
            segs.append(Seg("any", None, deep))
        pos = m.end()
    return JsonPath(text, tuple(segs), case_insensitive)


class Selector:
    """Several JSONPaths applied together: for each node, which of them match, one memoized look-up.

    Documents of one API repeat their shapes, so after the first request a node costs a dict hit
    however many rules a route has.
    """

    MEMO_SIZE = 20_000
    SHAPES_SIZE = 256  # document shapes remembered (see Shape) ...
    SHAPE_MAX = 64 * 1024  # ... each at most this long

    def __init__(self, paths: Sequence[JsonPath | None]):
        self.paths = tuple(paths)  # None: a rule that is not a JSON rule, never matches
        self._memo: dict[Path, tuple[int, ...]] = {}
        self.shapes: dict[bytes, object] = {}  # what a caller derived per document shape (``Shape.key``)

    def remember_shape(self, key: bytes, value: object) -> None:
        if len(key) > self.SHAPE_MAX:
            return
        if len(self.shapes) >= self.SHAPES_SIZE:
            self.shapes.clear()
        self.shapes[key] = value

    def which(self, path: Path) -> tuple[int, ...]:
        hit = self._memo.get(path)
        if hit is None:
            hit = tuple(
                i for i, p in enumerate(self.paths) if p is not None and _match(p.segs, 0, path, 0, p.case_insensitive)
            )
            if len(self._memo) >= self.MEMO_SIZE:
                self._memo.clear()
            self._memo[path] = hit
        return hit

    def select(self, nodes: list[Node]) -> list[list[Node]]:
        """The nodes each path selects (document order), one list per path."""
        out: list[list[Node]] = [[] for _ in self.paths]
        get, which = self._memo.get, self.which
        for n in nodes:
            hit = get(n.path)
            if hit is None:
                hit = which(n.path)
            for i in hit:
                out[i].append(n)
        return out


def select(nodes: list[Node], path: JsonPath) -> list[Node]:
    return [nd for nd in nodes if path.matches(nd.path)]


def leaves_under(nodes: list[Node], container: Node) -> list[Node]:
    """String leaves inside a container node (by span)."""
    return [nd for nd in nodes if nd.kind == "str" and container.start < nd.start and nd.end <= container.end]


def escape_string_body(value: str) -> bytes:
    """JSON string contents (no quotes) for ``value``, ASCII-safe where it matters for reveal."""
    return encode_basestring(value)[1:-1].encode("utf-8")  # what json.dumps(ensure_ascii=False) does, in C
