import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloakgate.core import jsonspan
from cloakgate.core.errors import BodyError, RuleError

DOC = b'{"Message":{"subject":"hi\\u00e9","to":[{"a":"x"},{"a":"y"}],"n":1.5e3,"b":true,"z":null},"x":[]}'


def spans(path, doc=DOC, ci=True):
    nodes = jsonspan.walk(doc)
    return [doc[n.start : n.end] for n in jsonspan.select(nodes, jsonspan.compile_path(path, case_insensitive=ci))]


@pytest.mark.parametrize(
    "path,expected",
    [
        ("$.message.subject", [b'"hi\\u00e9"']),
        ("$.Message.to[*].a", [b'"x"', b'"y"']),
        ("$.message.to[1].a", [b'"y"']),
        ("$..a", [b'"x"', b'"y"']),
        ("$['Message']['n']", [b"1.5e3"]),
        ("$.message.*", [b'"hi\\u00e9"', b'[{"a":"x"},{"a":"y"}]', b"1.5e3", b"true", b"null"]),
        ("$.nope", []),
    ],
)
def test_select(path, expected):
    assert spans(path) == expected


def test_case_sensitive_when_asked():
    assert spans("$.message.subject", ci=False) == []
    assert spans("$.Message.subject", ci=False) == [b'"hi\\u00e9"']


def test_duplicate_keys_are_all_reported():
    doc = b'{"s":"one","s":"two"}'
    assert spans("$.s", doc) == [b'"one"', b'"two"']


@pytest.mark.parametrize(
    "bad",
    [b"{", b'{"a":}', b"[1,]", b'{"a":1,}', b'{"a" 1}', b"1 2", b"", b"[1 2]", b"{,}", b"[,1]", b'{"a":1}x',
     b"nul", b'"\x01"', b'{"a":"\\x"}', b"[01]", b"{'a':1}", b'{"a":1}}', b"]"],
)
def test_malformed_is_refused(bad):
    with pytest.raises(BodyError) as e:
        jsonspan.walk(bad)
    assert e.value.code == "cloakgate.body.malformed_json"


def test_depth_is_bounded():
    with pytest.raises(BodyError) as e:
        jsonspan.walk(b"[" * 100 + b"]" * 100)
    assert e.value.code == "cloakgate.body.too_complex"


@pytest.mark.parametrize("bad", ["a.b", "$.", "$[", "$.a[x]", "$..", "$.a b"])
def test_bad_paths(bad):
    with pytest.raises(RuleError):
        jsonspan.compile_path(bad)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=5), c, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_walk_agrees_with_json_module(value):
    doc = json.dumps(value).encode()
    nodes = jsonspan.walk(doc)
    root = nodes[0]
    assert (root.start, root.end) == (0, len(doc))
    for n in nodes:
        v = value
        for step in n.path:
            v = v[step]
        assert json.loads(doc[n.start : n.end]) == v
