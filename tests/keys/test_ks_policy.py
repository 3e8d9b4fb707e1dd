"""Release policy: SKR-style grammar over normalized claims, fail closed."""

from __future__ import annotations

import pytest

from cloakgate_keys.service.policy import DENY_ALL, PolicyError, parse_policy

CLAIMS = {"tee": "sgx", "measurement": "ab" * 32, "svn": 5, "debug": False, "tcb_status": "UpToDate",
          "signer": None, "x": {"nested": "yes"}}


def allows(cond: dict) -> bool:
    return parse_policy({"version": "1.0.0", "allOf": [cond]}).allows(CLAIMS)


@pytest.mark.parametrize("cond, expected", [
    ({"claim": "tee", "equals": "sgx"}, True),
    ({"claim": "tee", "equals": "tdx"}, False),
    ({"claim": "tee", "notEquals": "tdx"}, True),
    ({"claim": "debug", "equals": False}, True),
    ({"claim": "debug", "equals": 0}, False),  # type-strict: false is not 0
    ({"claim": "svn", "equals": True}, False),
    ({"claim": "svn", "greater": 4}, True),
    ({"claim": "svn", "greater": 5}, False),
    ({"claim": "svn", "greaterOrEquals": 5}, True),
    ({"claim": "svn", "less": 5}, False),
    ({"claim": "svn", "lessOrEquals": 5}, True),
    ({"claim": "tee", "greater": 1}, False),  # ordering applies to numbers only
    ({"claim": "missing", "equals": "x"}, False),
    ({"claim": "missing", "notEquals": "x"}, False),  # a missing claim never satisfies
    ({"claim": "signer", "exists": False}, True),  # None counts as absent
    ({"claim": "tee", "exists": True}, True),
    ({"claim": "x.nested", "equals": "yes"}, True),
    ({"claim": "x.nested.deeper", "exists": True}, False),
    ({"anyOf": [{"claim": "tee", "equals": "snp"}, {"claim": "tee", "equals": "sgx"}]}, True),
    ({"anyOf": []}, False),
    ({"allOf": [{"claim": "tee", "equals": "sgx"}, {"claim": "svn", "greater": 9}]}, False),
])
def test_operators(cond, expected):
    assert allows(cond) is expected


@pytest.mark.parametrize("doc", [
    {"allOf": [{"claim": "tee", "matches": "s.*"}]},  # unknown operator
    {"allOf": [{"claim": "tee", "equals": "sgx", "greater": 1}]},  # two operators
    {"allOf": [{"claim": "tee"}]},
    {"allOf": [{"claim": "svn", "greater": "4"}]},
    {"allOf": [{"claim": "tee", "equals": ["sgx"]}]},
    {"allOf": [{"claim": "tee", "exists": "yes"}]},
    {"allOf": [{"claim": "", "equals": 1}]},
    {"allOf": []},  # vacuous truth refused
    {"allOf": [{"oneOf": []}]},
    {"anyOf": [], "allOf": []},
    {"version": "2.0.0", "anyOf": []},
    {"anyOf": [{"authority": "https://x", "allOf": []}]},
    {},
    [],
    "not: [valid",
])
def test_invalid_policies_refused(doc):
    with pytest.raises(PolicyError):
        parse_policy(doc)


def test_yaml_and_json_text():
    yaml_text = "version: 1.0.0\nanyOf:\n  - claim: tee\n    equals: sgx\n"
    json_text = '{"anyOf": [{"claim": "tee", "equals": "sgx"}]}'
    assert parse_policy(yaml_text).allows(CLAIMS) and parse_policy(json_text).allows(CLAIMS)


def test_depth_bounded():
    doc: dict = {"claim": "tee", "equals": "sgx"}
    for _ in range(20):
        doc = {"allOf": [doc]}
    with pytest.raises(PolicyError):
        parse_policy(doc)


def test_deny_all_denies():
    assert not DENY_ALL.allows(CLAIMS)
