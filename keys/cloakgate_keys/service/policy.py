"""Release policy: the Azure Key Vault SKR grammar (ATTESTATION.md §8.5) over normalized claims.

    policy    = { "version"?: "1.0.0", ("anyOf" | "allOf"): [ condition, ... ] }
    condition = { "claim": "<name or dotted.path>", <op>: value } | { "anyOf": [...] } | { "allOf": [...] }
    op        = equals | notEquals | less | lessOrEquals | greater | greaterOrEquals | exists

Claims are ``Claims.to_json()`` keys (tee, measurement, signer, product_id, svn, tcb_status, debug,
report_data, SIMULATED and verifier extras), or the payload of an attestation token. A group may name
an ``authority`` (as Azure SKR policies do): it then holds only for claims whose ``iss`` is that
authority (trailing slashes ignored). Claims from our own verifiers carry no ``iss``, so such a group
never holds for them. Fail closed everywhere: unknown keys or operators, empty
``allOf`` and wrong value types are refused when the policy is parsed; at evaluation a missing claim
makes its condition false, equality is type-strict (true != 1), ordering applies to numbers only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

OPS = frozenset({"equals", "notEquals", "less", "lessOrEquals", "greater", "greaterOrEquals", "exists"})
MAX_DEPTH = 8
MAX_NODES = 256
_MISSING = object()


class PolicyError(ValueError):
    """The policy document is not valid; the message names the problem, never claim values."""


@dataclass(frozen=True)
class Claim:
    path: tuple[str, ...]
    op: str
    value: Any


@dataclass(frozen=True)
class Group:
    any: bool  # True: anyOf, False: allOf
    children: tuple[Claim | Group, ...]
    authority: str | None = None


@dataclass(frozen=True)
class Policy:
    root: Group
    document: Mapping[str, Any]  # the document as given (JSON-safe), for storage and display

    def allows(self, claims: Mapping[str, Any]) -> bool:
        return _eval(self.root, claims)


def _scalar(v: Any) -> bool:
    return isinstance(v, str | bool | int | float)


def _group(key: str, items: Any, depth: int, count: list[int]) -> Group:
    if not isinstance(items, list):
        raise PolicyError(f"{key} must be a list")
    if key == "allOf" and not items:
        raise PolicyError("empty allOf")
    return Group(key == "anyOf", tuple(_node(x, depth + 1, count) for x in items))


def _node(doc: Any, depth: int, count: list[int]) -> Claim | Group:
    count[0] += 1
    if depth > MAX_DEPTH or count[0] > MAX_NODES:
        raise PolicyError("policy too large")
    if not isinstance(doc, dict):
        raise PolicyError("condition must be an object")
    if "claim" in doc:
        ops = set(doc) - {"claim"}
        if len(ops) != 1 or not ops <= OPS:
            raise PolicyError("a claim condition needs exactly one known operator")
        (op,) = ops
        name, value = doc["claim"], doc[op]
        if not isinstance(name, str) or not name or any(not p for p in name.split(".")):
            raise PolicyError("claim name must be a non-empty dotted path")
        if op == "exists" and not isinstance(value, bool):
            raise PolicyError("exists takes true or false")
        if op in ("less", "lessOrEquals", "greater", "greaterOrEquals") and (
                isinstance(value, bool) or not isinstance(value, int | float)):
            raise PolicyError("ordering operators take numbers")
        if not _scalar(value):
            raise PolicyError("operator value must be a string, number or boolean")
        return Claim(tuple(name.split(".")), op, value)
    authority = doc.get("authority")
    if authority is not None and (not isinstance(authority, str) or not authority.startswith("https://")):
        raise PolicyError("authority must be an https URL")
    keys = set(doc) - {"authority"}
    if len(keys) != 1 or next(iter(keys)) not in ("anyOf", "allOf"):
        raise PolicyError("condition must be claim, anyOf or allOf")
    key = next(iter(keys))
    group = _group(key, doc[key], depth, count)
    return Group(group.any, group.children, authority.rstrip("/")) if authority else group


def parse_policy(doc: Any) -> Policy:
    """Compile a policy document (a mapping, or JSON/YAML text). Raises ``PolicyError``."""
    if isinstance(doc, bytes | str):
        try:
            doc = yaml.safe_load(doc)
        except yaml.YAMLError as e:
            raise PolicyError("policy is not valid YAML or JSON") from e
    if not isinstance(doc, dict):
        raise PolicyError("policy must be an object")
    keys = set(doc) - {"version"}
    if doc.get("version", "1.0.0") != "1.0.0":
        raise PolicyError("unsupported policy version")
    if len(keys) != 1 or not keys <= {"anyOf", "allOf"}:
        raise PolicyError("policy needs exactly one of anyOf, allOf")
    (key,) = keys
    root = _group(key, doc[key], 0, [0])
    try:
        canonical = json.loads(json.dumps(doc))
    except (TypeError, ValueError) as e:
        raise PolicyError("policy must be JSON-compatible") from e
    return Policy(root, canonical)


DENY_ALL = parse_policy({"version": "1.0.0", "anyOf": []})


def _lookup(claims: Mapping[str, Any], path: Sequence[str]) -> Any:
    cur: Any = claims
    for p in path:
        if not isinstance(cur, Mapping) or p not in cur:
            return _MISSING
        cur = cur[p]
    return cur


def _same_type(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return True
    return type(a) is type(b)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _eval_claim(c: Claim, claims: Mapping[str, Any]) -> bool:
    v = _lookup(claims, c.path)
    present = v is not _MISSING and v is not None
    if c.op == "exists":
        return present is c.value
    if not present:
        return False
    if c.op == "equals":
        return _same_type(v, c.value) and v == c.value
    if c.op == "notEquals":
        return _same_type(v, c.value) and v != c.value
    if not _number(v):
        return False
    match c.op:
        case "less":
            return v < c.value
        case "lessOrEquals":
            return v <= c.value
        case "greater":
            return v > c.value
        case "greaterOrEquals":
            return v >= c.value
    return False  # unknown operator: fail closed


def _eval(node: Claim | Group, claims: Mapping[str, Any]) -> bool:
    if isinstance(node, Claim):
        return _eval_claim(node, claims)
    if node.authority is not None:
        iss = claims.get("iss")
        if not isinstance(iss, str) or iss.rstrip("/") != node.authority:
            return False
    results = (_eval(c, claims) for c in node.children)
    return any(results) if node.any else bool(node.children) and all(results)
