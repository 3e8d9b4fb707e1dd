"""protect_request and reveal_body together, through rule packs."""

from __future__ import annotations

import base64
import gzip
import json
import os
import textwrap
import urllib.parse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloakgate.core.errors import BodyError, CloakgateError, KeyUnavailable
from cloakgate.core.keyring import EmptyKeyRing, StaticKeyRing
from cloakgate.core.protect import protect_request
from cloakgate.core.reveal import Revealer, reveal_body
from cloakgate.core.rules import parse_pack
from tests.conftest import make_key

PACK = parse_pack(textwrap.dedent("""\
    saas: Test
    id: test
    hosts: [api.test.example]
    defaults: {on_missing: skip}
    routes:
      - name: note
        methods: [POST]
        path: /notes
        fields:
          - {json: "$.title", scheme: words}
          - {json: "$.secret", scheme: aead}
          - {json: "$.owner.email", scheme: {type: email, domain: p.test.example}}
          - {json: "$.tags[*]", scheme: deterministic}
          - {json: "$.phone", scheme: {type: fpe}}
          - {json: "$.required", scheme: aead, on_missing: refuse}
          - {json: "$.opt_num", scheme: aead, on_malformed: skip}
          - {json: "$.short", scheme: aead, max_length: 40}
      - name: form
        methods: [POST]
        path: /form
        fields:
          - {form: name, scheme: words}
          - form: payload
            decode: [json]
            fields: [{json: "$.who", scheme: words}]
      - name: hdr
        methods: [POST]
        path: /hdr
        fields:
          - header: X-Data
            decode: [url, json]
            fields: [{json: "$.who", scheme: words}]
          - {query: q, grammar: kql, scheme: words}
          - {query: f, grammar: odata, scheme: words, properties: [subject]}
      - name: search
        methods: [GET]
        path: /search
        fields: [{query: q, scheme: words}]
      - name: lookup
        methods: [GET]
        path: /lookup
        fields: [{query: id, scheme: deterministic, on_missing: refuse}]
      - name: users
        methods: [GET]
        path: /users/{upn}
        fields: [{path: upn, scheme: {type: email, domain: p.test.example}}]
      - name: batch
        methods: [POST]
        path: /batch
        fields:
          - json: "$.requests[*].body"
            decode: [base64, json]
            fields: [{json: "$.title", scheme: words}]
    """), "test.yaml", "test")

RING = StaticKeyRing([make_key("abc", "test")])
J = [("content-type", "application/json")]


def protect(path, body=b"", headers=J, method="POST", ring=RING):
    return protect_request(PACK, method, path, headers, body, ring, os.urandom)


def reveal(data: bytes, ctype="application/json", enc=None, rules=()):
    return reveal_body(Revealer(RING), data, ctype, enc, max_size=1 << 20, pack=PACK, reveal_rules=rules)


def test_json_fields_protected_bytes_preserved_and_revealed():
    body = b'{"title": "Hello World", "keep":1.50, "secret":"hidd\\u00e9n", "tags":["a","b","a"], "required":"r"}'
    out = protect("/notes", body)
    new = out.body
    assert b'"keep":1.50' in new and new.startswith(b'{"title": "')  # untouched bytes stay identical
    doc = json.loads(new)
    assert doc["tags"][0] == doc["tags"][2] != doc["tags"][1]  # deterministic
    assert "Hello" not in new.decode() and "hidd" not in new.decode()
    assert dict(out.counts) == {("json:$.title", "words"): 1, ("json:$.secret", "aead"): 1,
                                ("json:$.tags[*]", "deterministic"): 3, ("json:$.required", "aead"): 1}
    back = reveal(new)
    assert json.loads(back.body) == json.loads(body)


def test_fpe_is_format_preserving_and_revealed_by_position():
    out = protect("/notes", b'{"phone": "+1 (555) 867-5309", "required": "r"}')
    phone = json.loads(out.body)["phone"]
    assert len(phone) == len("+1 (555) 867-5309") and phone != "+1 (555) 867-5309"
    assert [c for c in phone if not c.isdigit()] == list("+ () -")
    route = PACK.route_for("POST", "/notes")[0]
    from cloakgate.core.rules import RevealRule
    from cloakgate.core.jsonspan import compile_path
    from cloakgate.core import schemes

    rr = (RevealRule(compile_path("$.phone"), schemes.Fpe()),)
    assert json.loads(reveal(out.body, rules=rr).body)["phone"] == "+1 (555) 867-5309"
    assert route.name == "note"


@pytest.mark.parametrize(
    "body,code",
    [
        (b'{"title": "x"}', "cloakgate.field.missing"),
        (b'{"required": null}', "cloakgate.field.missing"),
        (b'{"required": 5}', "cloakgate.field.malformed"),
        (b'{"required": "r", "short": "' + b"x" * 30 + b'"}', "cloakgate.field.too_long"),
        (b'{"required": "r", "phone": "123"}', "cloakgate.fpe.domain"),
        (b'{"required": "r", "owner": {"email": "nope"}}', "cloakgate.field.not_email"),
        (b'{"required": "r"', "cloakgate.body.malformed_json"),
        (b"", "cloakgate.field.missing"),
    ],
)
def test_refusals(body, code):
    with pytest.raises(CloakgateError) as e:
        protect("/notes", body)
    assert e.value.code == code


def test_trailing_text_after_a_body_of_a_known_shape_is_refused():
    # regression: an unterminated string after a body whose shape was seen before passed for that shape
    assert b"Plan" not in protect("/notes", b'{"required": "r", "title": "Plan"}').body
    for tail in (b'"Plan', b'"'):
        with pytest.raises(CloakgateError) as e:
            protect("/notes", b'{"required": "r", "title": "Plan"}' + tail)
        assert e.value.code == "cloakgate.body.malformed_json"


def test_skip_policy_passes_through_untouched():
    out = protect("/notes", b'{"required": "r", "opt_num": 7}')
    assert b'"opt_num": 7' in out.body


def test_no_key_fails_closed():
    with pytest.raises(KeyUnavailable):
        protect("/notes", b'{"required":"r"}', ring=EmptyKeyRing())


def test_unmatched_routes_pass_and_body_type_is_enforced():
    assert protect("/other", b"whatever").route is None
    with pytest.raises(BodyError) as e:
        protect("/notes", b"title=x", headers=[("content-type", "application/x-www-form-urlencoded")])
    assert e.value.code == "cloakgate.body.unexpected_content_type"


def test_compressed_request_bodies_are_protected_and_recompressed():
    body = gzip.compress(b'{"title": "Hello", "required": "r"}')
    out = protect("/notes", body, headers=J + [("content-encoding", "gzip")])
    inner = gzip.decompress(out.body)
    assert b"Hello" not in inner and json.loads(reveal(inner).body)["title"] == "Hello"


def test_form_field_holding_json():
    payload = json.dumps({"who": "Jane Roe", "n": 1})
    body = urllib.parse.urlencode({"name": "Jane", "payload": payload, "other": "x y"}).encode()
    out = protect("/form", body, headers=[("content-type", "application/x-www-form-urlencoded; charset=UTF-8")])
    fields = dict(urllib.parse.parse_qsl(out.body.decode()))
    assert fields["other"] == "x y" and "Jane" not in out.body.decode()
    inner = json.loads(fields["payload"])
    assert inner["n"] == 1 and "Roe" not in inner["who"]
    assert out.body.endswith(b"&other=x+y")


def test_header_query_and_search_literals():
    hdr = urllib.parse.quote(json.dumps({"who": "Jane", "keep": "k"}))
    q = urllib.parse.quote('"lunch" AND subject:Jane')
    f = urllib.parse.quote("subject eq 'Lunch Date' and importance eq 'high'")
    out = protect(f"/hdr?q={q}&f={f}&x=1", b"", headers=[("X-Data", hdr)])
    inner = json.loads(urllib.parse.unquote(out.headers["X-Data"]))
    assert inner["keep"] == "k" and inner["who"] != "Jane"
    query = dict(urllib.parse.parse_qsl(out.path.split("?", 1)[1]))
    assert query["x"] == "1"
    assert query["q"].startswith('"qxw') and " AND subject:qxw" in query["q"]
    assert "importance eq 'high'" in query["f"] and "Lunch" not in query["f"]
    # the literal is transformed exactly like a stored subject, so equality search matches
    stored = json.loads(protect("/notes", json.dumps({"title": "Lunch Date", "required": "r"}).encode()).body)["title"]
    assert f"subject eq '{stored}'" in query["f"]


@pytest.mark.parametrize("query", ["q=Zaphod", "%71=Zaphod", "x=1&q=Zaphod", "q=Zaphod+Beeblebrox", "q=Zaph%6Fd"])
def test_query_fields_are_found_in_every_spelling(query):
    out = protect(f"/hdr?{query}", b"", headers=[("X-Data", "%7B%7D")])
    assert out.path is not None and "Zaph" not in out.path and "qxw" in out.path


@pytest.mark.parametrize("query", ["", "x=1", "quiet=Zaphod", "x=Zaphod&qq=1"])
def test_query_without_selected_fields_is_untouched(query):
    out = protect(f"/hdr?{query}" if query else "/hdr", b"", headers=[("X-Data", "%7B%7D")])
    assert out.path is None


@pytest.mark.parametrize("query", ["x=1&quiet=2", "q=Zaphod"])
def test_read_route_fails_closed_without_a_key_whether_or_not_its_parameters_are_there(query):
    with pytest.raises(KeyUnavailable):
        protect(f"/search?{query}", method="GET", headers=[], ring=EmptyKeyRing())


def test_read_route_protects_its_query_parameters_only_where_they_are():
    out = protect("/search?x=1&quiet=2", method="GET", headers=[])
    assert (out.route, out.path, out.kid, out.protected) == ("search", None, "abc", 0)
    out = protect("/search?x=1&q=Zaphod", method="GET", headers=[])
    assert "Zaphod" not in out.path and "&q=qxw" in out.path and out.protected == 1


def test_read_route_refuses_a_missing_parameter_its_rule_requires():
    with pytest.raises(CloakgateError) as e:
        protect("/lookup?x=1", method="GET", headers=[])
    assert e.value.code == "cloakgate.field.missing"
    assert protect("/lookup?id=42", method="GET", headers=[]).path.startswith("/lookup?id=qxd")


def test_malformed_query_is_refused_even_without_selected_fields():
    with pytest.raises(BodyError):
        protect("/hdr?x=%zz", b"", headers=[("X-Data", "%7B%7D")])


def test_path_segment():
    out = protect("/users/jane%40example.com", method="GET", headers=[])
    assert out.path.startswith("/users/qxe") and out.path.endswith("%40p.test.example") or "@p.test.example" in out.path


def test_batch_bodies_object_and_base64():
    b64 = base64.b64encode(b'{"title": "Secret Plan"}').decode()
    body = json.dumps({"requests": [{"id": "1", "body": {"title": "Hello There"}}, {"id": "2", "body": b64}]}).encode()
    out = protect("/batch", body)
    doc = json.loads(out.body)
    assert "Hello" not in doc["requests"][0]["body"]["title"]
    inner = json.loads(base64.b64decode(doc["requests"][1]["body"]))
    assert "Secret" not in inner["title"]
    assert json.loads(reveal(base64.b64decode(doc["requests"][1]["body"])).body)["title"] == "Secret Plan"


def test_reveal_encodes_for_the_response_charset():
    tok = json.loads(protect("/notes", '{"secret": "Zoë € x", "required": "r"}'.encode()).body)["secret"]
    page = f"<p>{tok}</p>".encode()
    for ctype in ('text/html; Charset="ISO-8859-1"', "text/html; charset=iso-8859-1", "text/html;charset=latin-1"):
        assert reveal(page, ctype).body == "<p>Zoë &#8364; x</p>".encode("latin-1"), ctype
    assert reveal(page, "text/html").body == "<p>Zoë € x</p>".encode()  # no charset: UTF-8
    doc = json.dumps({"a": tok}).encode()
    assert reveal(doc, "application/json; charset=us-ascii").body == b'{"a": "Zo\\u00eb \\u20ac x"}'
    assert reveal(doc, "application/json; charset=utf-8").body == '{"a": "Zoë € x"}'.encode()


def test_reveal_contexts_and_counts():
    tok = json.loads(protect("/notes", b'{"secret": "<b>\\"Tom\\" & Jerry</b>", "required": "r"}').body)["secret"]
    html = f"<p title='{tok}'>{tok}</p>".encode()
    out = reveal(html, "text/html; charset=utf-8").body
    assert out == b"<p title='&lt;b&gt;&quot;Tom&quot; &amp; Jerry&lt;/b&gt;'>&lt;b&gt;&quot;Tom&quot; &amp; Jerry&lt;/b&gt;</p>"
    js = f"var x = '{tok}';".encode()
    assert reveal(js, "application/javascript").body == b"var x = '\\u003cb\\u003e\\\"Tom\\\" \\u0026 Jerry\\u003c/b\\u003e';"
    prefixed = b'while(1);\n{"a":"' + tok.encode() + b'"}'
    assert json.loads(reveal(prefixed).body[len(b"while(1);\n"):])["a"] == '<b>"Tom" & Jerry</b>'
    flipped = tok[:12] + ("b" if tok[12] != "b" else "c") + tok[13:]
    res = reveal(f"{tok[:-5]} and {flipped} qxaabc".encode(), "text/plain")
    assert res.body is None and res.stats.truncated == 1 and res.stats.invalid == 1


def test_reveal_compressed_response_and_bombs():
    tok = json.loads(protect("/notes", b'{"title": "Hello", "required": "r"}').body)["title"]
    res = reveal(gzip.compress(json.dumps({"t": tok}).encode()), enc="gzip")
    assert json.loads(res.body) == {"t": "Hello"}
    bomb = gzip.compress(b" " * (4 << 20))
    res = reveal_body(Revealer(RING), bomb, "application/json", "gzip", max_size=1 << 20)
    assert res.body is None and res.error == "cloakgate.body.too_large"
    assert reveal(b"\x89PNG qxa", "image/png").body is None


@given(st.dictionaries(st.sampled_from(["title", "secret", "tags"]), st.text(min_size=1), min_size=1))
@settings(max_examples=80, deadline=None)
def test_property_round_trip_and_no_plaintext(values):
    doc = {k: ([v] if k == "tags" else v) for k, v in values.items()}
    doc["required"] = "r"
    body = json.dumps(doc).encode()
    out = protect("/notes", body)
    sent = json.loads(out.body)
    for k, v in values.items():
        got = sent[k][0] if k == "tags" else sent[k]
        if k != "title":
            assert got != v and got.startswith("qx")
    assert json.loads(reveal(out.body).body or out.body) == doc


OVERLAP = parse_pack(textwrap.dedent("""\
    saas: Test
    id: test
    hosts: [api.test.example]
    routes:
      - name: same
        methods: [POST]
        path: /same
        fields:
          - {json: "$.title", scheme: words}
          - {json: "$..title", scheme: aead}
      - name: nested
        methods: [POST]
        path: /nested
        fields:
          - json: "$.payload"
            decode: [json]
            fields: [{json: "$.who", scheme: words}]
          - {json: "$.payload.who", scheme: aead}
    """), "overlap.yaml", "test")


def test_a_value_two_rules_select_is_protected_and_counted_once():
    out = protect_request(OVERLAP, "POST", "/same", J, b'{"title": "Hello", "x": {"title": "Nested"}}', RING, os.urandom)
    doc = json.loads(out.body)
    assert doc["title"].startswith("qxw") and doc["x"]["title"].startswith("qxa")  # the first rule wins
    assert dict(out.counts) == {("json:$.title", "words"): 1, ("json:$..title", "aead"): 1}
    assert json.loads(reveal_body(Revealer(RING), out.body, "application/json", None, max_size=1 << 20).body) == {
        "title": "Hello", "x": {"title": "Nested"}}


def test_rules_selecting_a_value_inside_another_rules_container_are_refused():
    with pytest.raises(CloakgateError) as e:
        protect_request(OVERLAP, "POST", "/nested", J, b'{"payload": {"who": "Alice"}}', RING, os.urandom)
    assert e.value.code == "cloakgate.rules.overlap"


SHAPES_YAML = textwrap.dedent("""\
    saas: Test
    id: test
    hosts: [api.test.example]
    defaults: {on_missing: skip, on_malformed: skip}
    routes:
      - name: shapes
        methods: [POST]
        path: /shapes
        fields:
          - {json: "$.title", scheme: words}
          - {json: "$.owner", scheme: deterministic}
          - {json: "$.tags[*]", scheme: aead}
          - {json: "$..name", scheme: {type: email, domain: p.test.example}}
          - json: "$.inner"
            fields: [{json: "$.who", scheme: words}]
    """)

shape_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda c: st.lists(c, max_size=3)
    | st.dictionaries(st.sampled_from(["title", "owner", "tags", "name", "inner", "who", "x"]), c, max_size=4),
    max_leaves=12,
)


def _protect_or_error(pack, body):
    try:
        out = protect_request(pack, "POST", "/shapes", J, body, RING, lambda n: b"\x07" * n)
    except CloakgateError as e:
        return e.code
    return out.body, dict(out.counts)


@given(shape_values, shape_values, st.lists(st.text(max_size=8), min_size=1, max_size=4), st.sampled_from([None, 1]))
@settings(max_examples=200, deadline=None)
def test_a_text_of_a_known_shape_is_protected_as_a_fresh_walk_would(first, other, new, indent):
    """The plan of a shape is replayed for the next text of that shape (and only for that shape):
    the same bytes, counts and errors as a pack that never saw a text before."""
    it = iter(range(10**6))

    def swap(v):
        if isinstance(v, str):
            return new[next(it) % len(new)]
        if isinstance(v, list):
            return [swap(x) for x in v]
        if isinstance(v, dict):
            return {k: swap(x) for k, x in v.items()}
        return v

    a = json.dumps(first, indent=indent).encode()
    b = json.dumps(swap(first), indent=indent).encode()
    warm, fresh = parse_pack(SHAPES_YAML, "s.yaml", "test"), parse_pack(SHAPES_YAML, "s.yaml", "test")
    _protect_or_error(warm, json.dumps(other, indent=indent).encode())  # another shape, remembered
    _protect_or_error(warm, a)  # remembers the shape of a
    assert _protect_or_error(warm, b) == _protect_or_error(fresh, b)


def test_a_string_where_nested_rules_expect_a_container_is_malformed():
    # was an IndexError (an internal error): rules with fields but no decode layers got a string
    skip = parse_pack(SHAPES_YAML, "s.yaml", "test")
    assert _protect_or_error(skip, b'{"inner": "text"}') == (None, {})
    refuse = parse_pack(SHAPES_YAML.replace("on_malformed: skip", "on_malformed: refuse"), "s.yaml", "test")
    assert _protect_or_error(refuse, b'{"inner": "text"}') == "cloakgate.field.malformed"


def test_repeated_values_are_protected_alike_and_counted_each_time():
    body = b'{"title": "Hello World", "tags": ["a", "a"], "secret": "s", "required": "r"}'
    first, second = protect("/notes", body), protect("/notes", body)  # the second from the outputs cache
    a, b = json.loads(first.body), json.loads(second.body)
    assert a["title"] == b["title"] and a["tags"] == b["tags"] and a["tags"][0] == a["tags"][1]
    assert a["secret"] != b["secret"]  # aead: random, never cached
    assert first.counts == second.counts == {("json:$.title", "words"): 1, ("json:$.tags[*]", "deterministic"): 2,
                                             ("json:$.secret", "aead"): 1, ("json:$.required", "aead"): 1}


def test_cached_outputs_belong_to_their_key():
    body = b'{"title": "Hello", "tags": ["a"], "required": "r"}'
    other = StaticKeyRing([make_key("abc", "test", seed=9)])  # same key id, other material: another handle
    first, second = protect("/notes", body), protect("/notes", body, ring=other)
    assert json.loads(first.body)["tags"] != json.loads(second.body)["tags"]
    assert json.loads(reveal_body(Revealer(other), second.body, "application/json", None, max_size=1 << 20).body)[
        "tags"] == ["a"]
