"""Rule packs: load and validate YAML against rules/schema.json, compile once into frozen objects.

Load errors name the file, the line and the offending key. The per-request path only looks things
up: host globs, route paths and JSONPaths are compiled here.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jsonschema
import yaml

from . import schemes as sch
from .errors import RuleError
from .jsonspan import JsonPath, Selector, compile_path

DEFAULT_MAX_BODY = 16 * 1024 * 1024
SCHEMA_PATH = Path(__file__).resolve().parents[3] / "rules" / "schema.json"


def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text("utf-8"))


# --- YAML with line numbers -----------------------------------------------------------------------

class _LineDict(dict):
    line: int = 0
    key_lines: dict[str, int]


class _LineList(list):
    line: int = 0
    item_lines: list[int]


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _LineDict:
    d = _LineDict()
    d.line = node.start_mark.line + 1
    d.key_lines = {}
    for knode, vnode in node.value:
        key = loader.construct_object(knode, deep=True)
        if not isinstance(key, str):
            raise RuleError(f"{knode.start_mark.line + 1}: keys must be strings", code="cloakgate.rules.yaml")
        if key in d:
            raise RuleError(f"{knode.start_mark.line + 1}: duplicate key '{key}'", code="cloakgate.rules.yaml")
        d[key] = loader.construct_object(vnode, deep=True)
        d.key_lines[key] = knode.start_mark.line + 1
    return d


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> _LineList:
    lst = _LineList(loader.construct_object(v, deep=True) for v in node.value)
    lst.line = node.start_mark.line + 1
    lst.item_lines = [v.start_mark.line + 1 for v in node.value]
    return lst


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def _locate(doc: Any, path: Sequence[Any]) -> tuple[int, str]:
    """Line and dotted key path of a schema error location."""
    line = getattr(doc, "line", 1)
    node = doc
    names: list[str] = []
    for step in path:
        if isinstance(node, _LineDict) and step in node:
            line = node.key_lines.get(step, line)
            names.append(str(step))
        elif isinstance(node, _LineList) and isinstance(step, int) and step < len(node):
            line = node.item_lines[step]
            names.append(f"[{step}]")
        else:
            break
        node = node[step]
    return line, ".".join(names).replace(".[", "[")


# --- compiled objects -----------------------------------------------------------------------------

WHERE = ("json", "form", "multipart", "query", "header", "path")


_SERIALS = itertools.count(1)


@dataclass(frozen=True)
class FieldRule:
    where: str
    selector: str
    scheme: sch.Scheme | None
    on_missing: str
    on_malformed: str
    grammar: str = "plain"
    max_length: int | None = None
    decode: tuple[str, ...] = ()
    fields: tuple[FieldRule, ...] = ()
    jsonpath: JsonPath | None = None
    properties: frozenset[str] | None = None  # odata: the properties whose literals are transformed
    serial: int = field(default_factory=lambda: next(_SERIALS), compare=False, repr=False)  # never reused

    @cached_property
    def cache_outputs(self) -> bool:
        """Whether a value's protected form may be cached (per key): a plain value, a deterministic scheme."""
        return self.grammar == "plain" and not self.fields and self.scheme is not None and self.scheme.deterministic

    @cached_property
    def label(self) -> str:
        return f"{self.where}:{self.selector}"

    @cached_property
    def count_key(self) -> tuple[str, str]:
        """How a protected value is counted: (label, scheme name)."""
        return self.label, self.scheme.name if self.scheme is not None else ""

    @cached_property
    def json_selector(self) -> Selector:
        """The JSONPaths of this rule's nested fields, applied together."""
        return json_selector(self.fields)

    @property
    def key(self) -> str:
        """Case-folded name for form, multipart, query and header selectors."""
        return self.selector.lower() if self.where == "header" else self.selector


def json_selector(rules: Sequence[FieldRule]) -> Selector:
    return Selector([r.jsonpath for r in rules])


@dataclass(frozen=True)
class RevealRule:
    jsonpath: JsonPath
    scheme: sch.Scheme


@dataclass(frozen=True)
class Route:
    name: str
    methods: frozenset[str] | None
    path_re: re.Pattern[str]
    content_types: tuple[str, ...]
    fields: tuple[FieldRule, ...]
    reveal: tuple[RevealRule, ...]

    @cached_property
    def body_kind(self) -> str | None:
        kinds = {f.where for f in self.fields} & {"json", "form", "multipart"}
        return kinds.pop() if kinds else None

    @cached_property
    def by_where(self) -> dict[str, tuple[FieldRule, ...]]:
        """The route's fields grouped by where they sit (json, form, query, ...), in rule order."""
        out: dict[str, list[FieldRule]] = {}
        for f in self.fields:
            out.setdefault(f.where, []).append(f)
        return {k: tuple(v) for k, v in out.items()}

    @cached_property
    def query_only(self) -> bool:
        """Every field of the route is a query parameter (a read route, typically)."""
        return self.by_where.keys() == {"query"}

    @cached_property
    def path_only(self) -> bool:
        """What the route does to a request without a body depends on its method and path alone
        (no header and no body field; or no field at all)."""
        return not self.fields or (self.body_kind is None and "header" not in self.by_where)

    @cached_property
    def json_selector(self) -> Selector:
        return json_selector(self.by_where.get("json", ()))

    def match(self, method: str, path: str) -> re.Match[str] | None:
        if self.methods is not None and method.upper() not in self.methods:
            return None
        return self.path_re.fullmatch(path)


@dataclass(frozen=True)
class Pack:
    id: str
    saas: str
    source: str
    hosts: tuple[str, ...]
    unmatched: str
    max_body: int
    routes: tuple[Route, ...]
    host_re: re.Pattern[str] = field(repr=False, default=re.compile(r"(?!)"))

    @cached_property
    def route_named(self) -> dict[str, Route]:
        return {r.name: r for r in self.routes}

    def match_host(self, host: str) -> bool:
        return self.host_re.fullmatch(host.lower().rstrip(".")) is not None

    def route_for(self, method: str, path: str) -> tuple[Route, re.Match[str]] | None:
        for r in self.routes:
            m = r.match(method, path)
            if m is not None:
                return r, m
        return None

    ROUTE_MEMO_SIZE = 4096

    @cached_property
    def _route_memo(self) -> dict[tuple[str, str], tuple[str, tuple[Route, re.Match[str]] | None]]:
        return {}

    def route_for_request(self, method: str, path: str) -> tuple[str, tuple[Route, re.Match[str]] | None]:
        """The normalized path of a request's path (query included or not) and the route it takes.

        Memoized on the method and the path before its query: a client asks for the same few paths
        again and again (a match object is immutable, so a remembered one serves every request).
        """
        key = (method, path.partition("?")[0])
        memo = self._route_memo
        hit = memo.get(key)
        if hit is None:
            npath = normalize_path(key[1])
            hit = (npath, self.route_for(method, npath))
            if len(memo) >= self.ROUTE_MEMO_SIZE:
                memo.clear()
            memo[key] = hit
        return hit

    @property
    def schemes_used(self) -> set[str]:
        out: set[str] = set()

        def visit(fs: Sequence[FieldRule]) -> None:
            for f in fs:
                if f.scheme is not None:
                    out.add(f.scheme.name)
                visit(f.fields)

        for r in self.routes:
            visit(r.fields)
        return out


def _glob_to_regex(glob: str) -> str:
    out = []
    i = 0
    while i < len(glob):
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        elif glob[i] == "{":
            j = glob.index("}", i)
            out.append(f"(?P<{glob[i + 1 : j]}>[^/]+)")
            i = j + 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return "".join(out)


def normalize_path(path: str) -> str:
    """The path a route is matched against: no query, percent-decoded, no empty, dot or matrix parts.

    Matching the normalized form means a client (or attacker) cannot step around a route with
    ``//``, ``/./``, ``%73endMail`` or ``;x=y``: the SaaS would accept those spellings too.
    """
    p = path.split("?", 1)[0].split("#", 1)[0]
    segs: list[str] = []
    for raw in unquote(p, errors="replace").split("/"):
        s = raw.split(";", 1)[0]
        if s in ("", "."):
            continue
        if s == "..":
            if segs:
                segs.pop()
            continue
        segs.append(s)
    return "/" + "/".join(segs)


class _Compiler:
    def __init__(self, source: str, doc: _LineDict):
        self.source = source
        self.doc = doc
        self.ci_keys = doc.get("json_keys", "insensitive") == "insensitive"
        self.named: dict[str, sch.Scheme] = {}

    def fail(self, where: Any, key: str, msg: str) -> RuleError:
        line = where.key_lines.get(key, where.line) if isinstance(where, _LineDict) else getattr(where, "line", 1)
        return RuleError(f"{self.source}:{line}: {key}: {msg}", code="cloakgate.rules.invalid")

    def scheme(self, holder: _LineDict, ref: Any) -> sch.Scheme:
        if isinstance(ref, str):
            if ref in self.named:
                return self.named[ref]
            if ref in sch.BUILTIN:
                return sch.BUILTIN[ref]
            raise self.fail(holder, "scheme", f"unknown scheme '{ref}'")
        return sch.make(ref)

    def field(self, f: _LineDict, defaults: Mapping[str, str], inner: str | None) -> FieldRule:
        where = next(w for w in WHERE if w in f)
        if inner is not None and where not in (inner,):
            raise self.fail(f, where, f"a field nested in decoded {inner} must select with '{inner}'")
        if "decode" in f and f["decode"][-1] not in ("json", "form"):
            raise self.fail(f, "decode", "the last decode layer must be json or form")
        jp = None
        if where == "json":
            try:
                jp = compile_path(f["json"], case_insensitive=self.ci_keys)
            except RuleError as e:
                raise self.fail(f, "json", e.message) from None
        scheme = self.scheme(f, f["scheme"]) if "scheme" in f else None
        grammar = f.get("grammar", "plain")
        if grammar != "plain" and not isinstance(scheme, (sch.Words, sch.Deterministic, sch.Email)):
            raise self.fail(f, "grammar", "query grammars need a searchable scheme (words, deterministic, email)")
        if grammar == "kql" and not isinstance(scheme, sch.Words):
            raise self.fail(f, "grammar", "kql queries need the words scheme")
        if "properties" in f and grammar != "odata":
            raise self.fail(f, "properties", "properties only apply to grammar odata")
        pol = {**defaults, **{k: f[k] for k in ("on_missing", "on_malformed") if k in f}}
        nested_kind = f["decode"][-1] if "decode" in f else ("json" if where == "json" else None)
        if "fields" in f and nested_kind is None:
            raise self.fail(f, "fields", "nested fields need decode (or a json parent)")
        sub = tuple(self.field(x, pol, nested_kind) for x in f.get("fields", ()))
        return FieldRule(
            where=where,
            selector=f[where],
            scheme=scheme,
            on_missing=pol["on_missing"],
            on_malformed=pol["on_malformed"],
            grammar=grammar,
            max_length=f.get("max_length"),
            decode=tuple(f.get("decode", ())),
            fields=sub,
            jsonpath=jp,
            properties=frozenset(x.lower() for x in f["properties"]) if "properties" in f else None,
        )

    def route(self, r: _LineDict, defaults: Mapping[str, str]) -> Route:
        flags = 0 if r.get("path_case") == "sensitive" else re.IGNORECASE
        src = r["path_regex"] if "path_regex" in r else _glob_to_regex(r["path"])
        key = "path_regex" if "path_regex" in r else "path"
        try:
            path_re = re.compile(src, flags)
        except (re.error, ValueError) as e:
            raise self.fail(r, key, f"invalid path pattern ({e.__class__.__name__})") from None
        pol = {**defaults, **r.get("defaults", {})}
        fields = tuple(self.field(f, pol, None) for f in r.get("fields", ()))
        for f in fields:
            if f.where == "path" and f.selector not in path_re.groupindex:
                raise self.fail(r, "fields", f"path field '{f.selector}' is not a placeholder of the route path")
        kinds = {f.where for f in fields} & {"json", "form", "multipart"}
        if len(kinds) > 1:
            raise self.fail(r, "fields", "one route selects from one body type (json, form or multipart)")
        reveal = tuple(
            RevealRule(compile_path(x["json"], case_insensitive=self.ci_keys), self.scheme(x, x["scheme"]))
            for x in r.get("reveal", ())
        )
        for rr in reveal:
            if rr.scheme.tagged:
                raise self.fail(r, "reveal", "tagged schemes are revealed everywhere; list only untagged (fpe) ones")
        methods = frozenset(m.upper() for m in r["methods"]) if "methods" in r else None
        cts = tuple(c.lower() for c in r.get("content_types", ()))
        return Route(r["name"], methods, path_re, cts, fields, reveal)

    def pack(self, default_id: str) -> Pack:
        d = self.doc
        for name, spec in d.get("schemes", {}).items():
            if name in sch.BUILTIN:
                raise self.fail(d["schemes"], name, "a named scheme may not shadow a built-in scheme")
            self.named[name] = sch.make(spec)
        defaults = {"on_missing": "refuse", "on_malformed": "refuse", **d.get("defaults", {})}
        routes = tuple(self.route(r, defaults) for r in d["routes"])
        names = [r.name for r in routes]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise self.fail(d, "routes", f"duplicate route name '{sorted(dup)[0]}'")
        hosts = tuple(h.lower() for h in d["hosts"])
        host_re = re.compile("|".join(f"(?:{fnmatch.translate(h)})" for h in hosts), re.IGNORECASE)
        return Pack(
            id=d.get("id", default_id),
            saas=d["saas"],
            source=self.source,
            hosts=hosts,
            unmatched=d.get("unmatched", "pass"),
            max_body=d.get("max_body", DEFAULT_MAX_BODY),
            routes=routes,
            host_re=host_re,
        )


_VALIDATOR: jsonschema.protocols.Validator | None = None


def _validator() -> jsonschema.protocols.Validator:
    global _VALIDATOR
    if _VALIDATOR is None:
        schema = load_schema()
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        _VALIDATOR = cls(schema)
    return _VALIDATOR


def parse_pack(text: str, source: str, default_id: str) -> Pack:
    """Validate and compile one pack. Raises RuleError naming source, line and key."""
    try:
        doc = yaml.load(text, Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        line = (e.problem_mark or e.context_mark).line + 1 if (e.problem_mark or e.context_mark) else 1
        raise RuleError(f"{source}:{line}: invalid YAML: {e.problem or e.context}", code="cloakgate.rules.yaml") from None
    except yaml.YAMLError:
        raise RuleError(f"{source}:1: invalid YAML", code="cloakgate.rules.yaml") from None
    except RuleError as e:
        raise RuleError(f"{source}:{e.message}", code=e.code) from None
    if not isinstance(doc, _LineDict):
        raise RuleError(f"{source}:1: a rule pack is a mapping", code="cloakgate.rules.invalid")
    err = jsonschema.exceptions.best_match(_validator().iter_errors(doc))
    if err is not None:
        path = list(err.absolute_path)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            allowed = set(err.schema.get("properties", {}))
            extra = [k for k in err.instance if k not in allowed]
            if extra:
                path.append(extra[0])
        line, key = _locate(doc, path)
        raise RuleError(f"{source}:{line}: {key or '(top)'}: {err.message}", code="cloakgate.rules.invalid")
    return _Compiler(source, doc).pack(default_id)


def load_pack(path: Path) -> Pack:
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RuleError(f"{path}:1: cannot read ({e.__class__.__name__})", code="cloakgate.rules.unreadable") from None
    return parse_pack(text, str(path), path.stem.lower())


def pack_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.y*ml") if p.suffix in (".yaml", ".yml") and not p.name.startswith("."))


def load_dir(directory: Path) -> tuple[list[Pack], dict[str, RuleError]]:
    """Every pack in ``directory`` (sorted by file name) and the errors of those that failed."""
    packs: list[Pack] = []
    errors: dict[str, RuleError] = {}
    for p in pack_files(directory):
        try:
            packs.append(load_pack(p))
        except RuleError as e:
            errors[str(p)] = e
    ids = [p.id for p in packs]
    for p in packs:
        if ids.count(p.id) > 1:
            errors[p.source] = RuleError(f"{p.source}:1: id: pack id '{p.id}' is used twice", code="cloakgate.rules.invalid")
    return [p for p in packs if p.source not in errors], errors
