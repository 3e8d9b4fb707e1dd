"""JSON with byte spans, and compiled JSONPath selectors over it.

``walk`` validates a JSON document with the C parser, then tokenizes it once (the C regex engine
does the scanning) and reports every value with its concrete path and its byte span, so replacements are spliced into the original bytes:
key order, escapes, numbers and duplicate keys stay exactly as the client sent them. Duplicate keys
are all reported (a SaaS parser may keep the first while Python keeps the last: both get protected).

``compile_path`` understands the JSONPath subset rule packs need (RFC 9535 names): ``$``, ``.name``,
``['name']``, ``[n]``, ``[*]``, ``.*`` and recursive descent ``..name`` / ``..*`` / ``..[*]``.
Keys are compared case-insensitively unless the pack asks otherwise (Graph and OWA keys are).
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from collections.abc import Sequence
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
    raw = data[start + 1 : end - 1]
    if b"\\" not in raw:
        return raw.decode("utf-8")
    return json.loads(data[start:end])


def _malformed() -> BodyError:
    return BodyError("body is not valid JSON", code="cloakgate.body.malformed_json")


def _too_complex(what: str) -> BodyError:
    return BodyError(f"JSON {what}", code="cloakgate.body.too_complex")


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def validate(data: bytes, offset: int = 0) -> None:
    """Raise BodyError unless ``data[offset:]`` is one JSON value in UTF-8 (RFC 8259), by the C parser."""
    try:
        json.loads(data[offset:].decode("utf-8"), parse_constant=_no_constant)
    except RecursionError:
        raise _too_complex("nests too deep") from None
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        raise _malformed() from None


_SCALAR_KIND = {ord("t"): "bool", ord("f"): "bool", ord("n"): "null"}


def walk(data: bytes, *, max_depth: int = 64, max_nodes: int = 200_000, offset: int = 0) -> list[Node]:
    """All values of a JSON text with their paths and spans (document order, containers first).

    The C parser validates the whole text first (BodyError cloakgate.body.malformed_json otherwise);
    then one regex split finds the tokens and a small loop tracks where each value sits.
    """
    if data.startswith(_BOM, offset):
        offset += 3
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

    def __init__(self, paths: Sequence[JsonPath | None]):
        self.paths = tuple(paths)  # None: a rule that is not a JSON rule, never matches
        self._memo: dict[Path, tuple[int, ...]] = {}

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
