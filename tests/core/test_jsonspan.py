import bisect
import json

import pytest
from hypothesis import given, settings
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


@pytest.mark.parametrize("bad", [b"NaN", b'{"a":Infinity}', b"[-Infinity]", b'{"a":"\xff"}',
                                 '{"a":"b"}'.encode("utf-16"), b'{"a":1}\x00', b"[1]\x0c"])
def test_only_rfc8259_json_in_utf8(bad):
    with pytest.raises(BodyError) as e:
        jsonspan.walk(bad)
    assert e.value.code == "cloakgate.body.malformed_json"


def test_escaped_keys_are_selected_like_plain_ones():
    # a client that spells a key with escapes must not step around a rule: the SaaS decodes them
    doc = b'{"\\u0073ubject":"a","sub\\u006Aect":"b","subject":"c"}'
    assert spans("$.subject", doc) == [b'"a"', b'"b"', b'"c"']


def test_spans_are_bytes_with_multibyte_text_bom_and_whitespace():
    doc = '\ufeff {\n "näme" : [ "ü€😀" , {"k":"\\"q\\\\"} ],\t"z":-1.5E+3 }\r\n'.encode("utf-8")
    assert spans("$['näme'][0]", doc) == ['"ü€😀"'.encode()]
    assert spans("$.näme[1].k", doc) == [b'"\\"q\\\\"']
    assert spans("$.z", doc) == [b"-1.5E+3"]
    nodes = jsonspan.walk(doc)
    assert nodes[2].text(doc) == "ü€😀" and nodes[4].text(doc) == '"q\\'


def test_spans_after_a_prefix_are_offsets_in_the_whole_body():
    doc = b'while(1);\xef\xbb\xbf {"a": ["x", {"b\\u0041": "y"}], "c": [1]}'
    nodes = jsonspan.walk(doc, offset=9)
    got = {n.path: doc[n.start : n.end] for n in nodes}
    assert got[("a", 0)] == b'"x"' and got[("a", 1, "bA")] == b'"y"' and got[("c",)] == b"[1]"
    assert got[()] == doc[doc.index(b"{") :]


def test_too_many_values_is_bounded():
    with pytest.raises(BodyError) as e:
        jsonspan.walk(b"[" + b"1," * 100 + b"1]", max_nodes=50)
    assert e.value.code == "cloakgate.body.too_complex"


def test_selector_applies_several_paths_at_once():
    sel = jsonspan.Selector([jsonspan.compile_path("$..a"), None, jsonspan.compile_path("$.Message.to[0].a")])
    nodes = jsonspan.walk(DOC)
    got = [[DOC[n.start : n.end] for n in hits] for hits in sel.select(nodes)]
    assert got == [[b'"x"', b'"y"'], [], [b'"x"']]
    assert sel.select(nodes) == sel.select(nodes)  # memoized answers are the same answers


@given(json_values, st.sampled_from([None, 2]), st.booleans())
def test_walk_agrees_with_json_module_any_layout(value, indent, ascii_only):
    doc = json.dumps(value, indent=indent, ensure_ascii=ascii_only).encode()
    for n in jsonspan.walk(doc):
        v = value
        for step in n.path:
            v = v[step]
        assert json.loads(doc[n.start : n.end]) == v
        if n.kind == "str":
            assert n.text(doc) == v


# --- shapes: a text cut at its quotes; equal shapes, equal structure --------------------------------

def _strings_replaced(value, new):
    """``value`` with every string value (not the keys) replaced by the next of ``new`` (cycled)."""
    if isinstance(value, str):
        return new[next(_strings_replaced.n) % len(new)]
    if isinstance(value, list):
        return [_strings_replaced(v, new) for v in value]
    if isinstance(value, dict):
        return {k: _strings_replaced(v, new) for k, v in value.items()}
    return value


def _structure(doc: bytes) -> list[tuple]:
    """Every node of ``doc`` as (path, kind, where): a string by its index in the shape's parts, any
    other value by the gaps it starts and ends in and its offsets there."""
    shape = jsonspan.shape(doc)
    index = {shape.literal(i)[0]: i for i in range(1, len(shape.parts), 2)}

    def gap(pos):
        i = bisect.bisect_right(shape.starts, pos) - 1
        return i, pos - shape.starts[i]

    return [(n.path, n.kind, index[n.start] if n.kind == "str" else gap(n.start) + gap(n.end - 1))
            for n in jsonspan.walk(doc)]


@given(json_values, st.sampled_from([None, 2]), st.booleans())
def test_shape_cuts_the_text_at_the_quotes_of_its_strings(value, indent, ascii_only):
    doc = json.dumps(value, indent=indent, ensure_ascii=ascii_only).encode()
    shape = jsonspan.shape(doc)
    assert b'"'.join(shape.parts) == doc and shape.starts[-1] == len(doc)
    literals = {shape.literal(i): shape.value(i) for i in range(1, len(shape.parts), 2)}
    for n in jsonspan.walk(doc):
        if n.kind == "str":  # every string value is one of the literals, with its value
            assert literals[(n.start, n.end)] == n.text(doc)
    assert shape.replace({}) == doc


@given(json_values, st.lists(st.text(), min_size=1, max_size=5), st.sampled_from([None, 2]), st.booleans())
def test_texts_of_one_shape_have_one_structure(value, new, indent, ascii_only):
    _strings_replaced.n = iter(range(10**6))
    other = _strings_replaced(value, new)
    a = json.dumps(value, indent=indent, ensure_ascii=ascii_only).encode()
    b = json.dumps(other, indent=indent, ensure_ascii=ascii_only).encode()
    assert jsonspan.shape(a).key == jsonspan.shape(b).key
    assert _structure(a) == _structure(b)


@pytest.mark.parametrize(
    "a,b",
    [
        (b'["a"]', b"[]"),
        (b'{"a":"x"}', b'{"b":"x"}'),
        (b'{"a":"x"}', b'{"a":1}'),
        (b'["x","y"]', b'["x"]'),
        (b'{"a":"x","b":"y"}', b'{"a":"x"}'),
        (b'{"a":"\\"","b":1}', b'{"a":"","b":2}'),  # escaped quotes: cut by the string grammar
        (b'{"a" :"x"}', b'{"a":"x"}'),  # whitespace is part of the shape
        (b'{"a" :"x"}', b'{"a" :{}}'),
        (b'{"a" :"x"}', b'{"b" :"x"}'),  # keys before spaced colons are keys
        (b'["a", "b"]', b'{"a": "b"}'),
    ],
)
def test_texts_of_different_structure_have_different_shapes(a, b):
    assert jsonspan.shape(a).key != jsonspan.shape(b).key


@pytest.mark.parametrize(
    "doc,strings,replaced",
    [
        (b'{"a":"x\\": 1, \\"b","c":"d"}', ["a", 'x": 1, "b', "c", "d"], b'{"Z":"x\\": 1, \\"b","c":"d"}'),
        (b'{"a" : "x", "b"\n:\t"y"}', ["a", "x", "b", "y"], b'{"Z" : "x", "b"\n:\t"y"}'),
        (b'\xef\xbb\xbf{"a":"x"}', ["a", "x"], b'\xef\xbb\xbf{"Z":"x"}'),
        (b'"only"', ["only"], b'"Z"'),
    ],
)
def test_shape_of_escaped_quotes_spaced_colons_and_a_bom(doc, strings, replaced):
    shape = jsonspan.shape(doc)
    assert [shape.value(i) for i in range(1, len(shape.parts), 2)] == strings
    assert shape.replace({}) == doc and shape.replace({1: b"Z"}) == replaced
    for i in range(1, len(shape.parts), 2):
        start, end = shape.literal(i)
        assert json.loads(doc[start:end]) == shape.value(i) and doc[start:end].startswith(b'"')


def test_shape_validates_like_walk():
    for bad in (b'{"a":}', b"NaN", b'{"a":"\xff"}', b"[1,]"):
        with pytest.raises(BodyError):
            jsonspan.shape(bad)


NASTY = st.sampled_from([b"\x00", b"\x1f", b"\n", b"\t", b"\\", b"\\\\", b"\\u12", b"\\u12ab", b"\\x", b"\\n",
                         b"\xff", b"\xc3\xa9", b"\xc3", b"a", b"/", b'\\"', b'"', b"\\/"])


@given(st.lists(st.text(max_size=6), min_size=1, max_size=3).map(lambda v: {"k": v}) | json_values,
       st.lists(NASTY, min_size=1, max_size=4), st.integers(0, 30), st.integers(0, 8), st.sampled_from([None, 2]))
@settings(max_examples=300)
def test_a_text_of_a_known_shape_is_valid_exactly_when_the_json_module_says_so(value, insert, which, at, indent):
    doc = json.dumps(value, indent=indent, ensure_ascii=False).encode()
    known = jsonspan.shape(doc)
    parts = known.parts.copy()
    strings = list(range(1, len(parts), 2))
    if strings:  # mutate one string's contents (a value or a key)
        i = strings[which % len(strings)]
        parts[i] = parts[i][:at] + b"".join(insert) + parts[i][at:]
    text = b'"'.join(parts)
    try:
        jsonspan.validate(text)
        expected = True
    except BodyError:
        expected = False
    try:
        jsonspan.shape(text, {known.key})
        got = True
    except BodyError:
        got = False
    assert got == expected


def test_a_text_of_a_known_shape_is_checked_without_building_its_values(monkeypatch):
    key = jsonspan.shape(b'{"a": "x", "b": ["y"]}').key

    def whole(*a, **k):
        raise AssertionError("validated whole")

    monkeypatch.setattr(jsonspan, "validate", whole)
    assert jsonspan.shape('{"a": "\\u00e9\\n", "b": ["ü"]}'.encode(), {key}).key == key
    with pytest.raises(AssertionError):  # a new shape is validated whole
        jsonspan.shape(b'{"a": "x", "b": ["y", 1]}', {key})


@pytest.mark.parametrize("known,text", [(b'["a","b"]', b'[\x00,"b"]'), (b'{"k":"a","j":"b"}', b'{"k":\x00,"j":"b"}'),
                                        (b'["a","b"]', b'[\x01,"b"]')])
def test_a_raw_control_character_between_strings_cannot_pass_for_a_known_shape(known, text):
    # joined with NUL, the gaps of [NUL,"b"] read like the gaps of ["a","b"] (one string fewer): such a
    # text must be validated whole, not by its strings
    with pytest.raises(BodyError):
        jsonspan.shape(text, {jsonspan.shape(known).key})


@pytest.mark.parametrize("known,text", [(b'""', b'"""'), (b'{"a":"b"}', b'{"a":"b"}"x'),
                                        (b'["a"]', b'["a"]"'), (b'{"a":"b"}', b'{"a":"b\\""}"')])
def test_an_unterminated_last_string_cannot_pass_for_a_known_shape(known, text):
    # an odd number of quotes cuts the text into an even number of parts: its gaps and keys are those
    # of the known text, its last "string" never closes (found by the property test above)
    with pytest.raises(BodyError):
        jsonspan.shape(text, {jsonspan.shape(known).key})
