"""JSON with byte spans, and compiled JSONPath selectors over it.

``walk`` tokenizes a JSON document once (the C regex engine does the scanning) and reports every
value with its concrete path and its byte span, so replacements are spliced into the original bytes:
key order, escapes, numbers and duplicate keys stay exactly as the client sent them. Duplicate keys
are all reported (a SaaS parser may keep the first while Python keeps the last: both get protected).

``compile_path`` understands the JSONPath subset rule packs need (RFC 9535 names): ``$``, ``.name``,
``['name']``, ``[n]``, ``[*]``, ``.*`` and recursive descent ``..name`` / ``..*`` / ``..[*]``.
Keys are compared case-insensitively unless the pack asks otherwise (Graph and OWA keys are).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from .errors import BodyError, RuleError

_TOKEN = re.compile(
    rb'\s*(?:(")((?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*)"|([{}\[\]:,])'
    rb"|(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)|(true|false|null))"
)
_WS = re.compile(rb"\s*")

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Node:
    path: Path
    kind: str  # "str" | "num" | "bool" | "null" | "obj" | "arr"
    start: int  # byte span of the whole value (strings include their quotes)
    end: int

    def text(self, data: bytes) -> str:
        """The decoded value of a string node."""
        return json.loads(data[self.start : self.end])


def _malformed() -> BodyError:
    return BodyError("body is not valid JSON", code="cloakgate.body.malformed_json")


def walk(data: bytes, *, max_depth: int = 64, max_nodes: int = 200_000, offset: int = 0) -> list[Node]:
    """All values of a JSON text with their paths and spans (document order, containers first).

    Raises BodyError(cloakgate.body.malformed_json) for anything that is not one valid JSON value.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        offset += 3
    nodes: list[Node] = []
    # stack entries: [kind, path, start, next_index, expecting]; expecting in
    #   obj: "key|end", "colon", "value", "comma|end" ; arr: "value|end", "comma|end"
    stack: list[list] = []
    pos = offset
    n = len(data)
    key: str | None = None
    done = False

    def add_value(kind: str, start: int, end: int) -> None:
        if not stack:
            path: Path = ()
        else:
            top = stack[-1]
            if top[0] == "obj":
                path = top[1] + (key,)
                top[4] = "comma|end"
            else:
                path = top[1] + (top[3],)
                top[3] += 1
                top[4] = "comma|end"
        if len(nodes) >= max_nodes:
            raise BodyError("JSON has too many values", code="cloakgate.body.too_complex")
        nodes.append(Node(path, kind, start, end))

    while True:
        m = _TOKEN.match(data, pos)
        if m is None:
            if _WS.match(data, pos).end() == n and done:
                return nodes
            raise _malformed()
        tok_start = m.start(1) if m.group(1) else m.start(m.lastindex or 0)
        pos = m.end()
        if done:
            raise _malformed()
        expecting = stack[-1][4] if stack else "value"
        if m.group(1):  # string
            if stack and stack[-1][0] == "obj" and expecting == "key|end":
                try:
                    key = json.loads(data[tok_start:pos])
                except ValueError:
                    raise _malformed() from None
                stack[-1][4] = "colon"
                continue
            if expecting not in ("value", "value|end"):
                raise _malformed()
            add_value("str", tok_start, pos)
        elif m.group(3):
            c = m.group(3)
            if c in b"{[":
                if expecting not in ("value", "value|end"):
                    raise _malformed()
                kind = "obj" if c == b"{" else "arr"
                add_value(kind, tok_start, -1)
                if len(stack) >= max_depth:
                    raise BodyError("JSON nests too deep", code="cloakgate.body.too_complex")
                stack.append([kind, nodes[-1].path, len(nodes) - 1, 0, "key|end" if kind == "obj" else "value|end"])
            elif c in b"}]":
                if not stack:
                    raise _malformed()
                top = stack[-1]
                want = b"}" if top[0] == "obj" else b"]"
                if c != want or top[4] not in ("key|end", "value|end", "comma|end"):
                    raise _malformed()
                if top[4] == "key|end" and top[3] == -1:
                    raise _malformed()  # trailing comma in object
                stack.pop()
                i = top[2]
                nodes[i] = Node(nodes[i].path, nodes[i].kind, nodes[i].start, pos)
                if not stack:
                    done = True
            elif c == b":":
                if expecting != "colon":
                    raise _malformed()
                stack[-1][4] = "value"
            else:  # comma
                if expecting != "comma|end":
                    raise _malformed()
                top = stack[-1]
                if top[0] == "obj":
                    top[4] = "key|end"
                    top[3] = -1  # marks "a key must follow" (no trailing comma)
                else:
                    top[4] = "value"  # a value must follow: no trailing comma
        else:
            if expecting not in ("value", "value|end"):
                raise _malformed()
            kind = "num" if m.group(4) else ("null" if m.group(5) == b"null" else "bool")
            add_value(kind, tok_start, pos)
        if not stack and nodes and nodes[-1].kind not in ("obj", "arr"):
            done = True


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


def select(nodes: list[Node], path: JsonPath) -> list[Node]:
    return [nd for nd in nodes if path.matches(nd.path)]


def leaves_under(nodes: list[Node], container: Node) -> list[Node]:
    """String leaves inside a container node (by span)."""
    return [nd for nd in nodes if nd.kind == "str" and container.start < nd.start and nd.end <= container.end]


def escape_string_body(value: str) -> bytes:
    """JSON string contents (no quotes) for ``value``, ASCII-safe where it matters for reveal."""
    return json.dumps(value, ensure_ascii=False)[1:-1].encode("utf-8")
