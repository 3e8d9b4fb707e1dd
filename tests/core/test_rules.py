import textwrap
from pathlib import Path

import pytest

from cloakgate.cli import check_dir, main
from cloakgate.core.errors import RuleError
from cloakgate.core.rules import load_dir, normalize_path, parse_pack
from tests.conftest import RULES

GOOD = """\
saas: Example
hosts: ["api.example.com", "*.example.org"]
routes:
  - name: contacts.create
    methods: [POST]
    path: /v1/{tenant}/contacts
    fields:
      - {json: "$.name", scheme: words}
"""


def parse(text: str):
    return parse_pack(textwrap.dedent(text), "pack.yaml", "pack")


def test_good_pack_compiles():
    p = parse(GOOD)
    assert p.id == "pack" and p.saas == "Example"
    assert p.match_host("API.Example.com") and p.match_host("x.example.org") and not p.match_host("example.com")
    route, m = p.route_for("POST", "/v1/acme/contacts")
    assert route.name == "contacts.create" and m.group("tenant") == "acme"
    assert p.route_for("GET", "/v1/acme/contacts") is None


@pytest.mark.parametrize(
    "text,line,key",
    [
        (GOOD.replace("methods: [POST]", "metods: [POST]"), 5, "routes[0].metods"),
        (GOOD.replace("scheme: words", "scheme: wordz"), 8, "scheme"),
        (GOOD.replace('json: "$.name"', 'json: "name"'), 8, "routes[0].fields[0].json"),
        (GOOD.replace("saas: Example\n", ""), 1, "(top)"),
        (GOOD + "  - name: x\n    path: /a\n    fields: [{json: '$.a', scheme: words, decode: [json]}]\n", 11, "routes[1].fields[0]"),
        (GOOD.replace("routes:", "routes: [\n"), 5, ""),
    ],
)
def test_errors_name_file_line_and_key(text, line, key):
    with pytest.raises(RuleError) as e:
        parse(text)
    assert e.value.message.startswith(f"pack.yaml:{line}: ")
    assert key in e.value.message


def test_duplicate_yaml_keys_are_refused():
    with pytest.raises(RuleError) as e:
        parse(GOOD.replace("saas: Example", "saas: Example\nsaas: Other"))
    assert "duplicate key 'saas'" in e.value.message and e.value.message.startswith("pack.yaml:2:")


@pytest.mark.parametrize(
    "raw,norm",
    [
        ("/v1.0/me/sendMail?x=1", "/v1.0/me/sendMail"),
        ("//v1.0//me/./sendMail/", "/v1.0/me/sendMail"),
        ("/v1.0/me/%73endMail", "/v1.0/me/sendMail"),
        ("/v1.0/x/../me/sendMail;jsessionid=1", "/v1.0/me/sendMail"),
    ],
)
def test_path_normalization_closes_bypasses(raw, norm):
    assert normalize_path(raw) == norm


def test_route_match_is_case_insensitive_by_default():
    p = parse(GOOD)
    assert p.route_for("POST", normalize_path("/V1/acme/CONTACTS")) is not None


def test_route_for_request_is_memoized_bounded_and_answers_like_route_for():
    p = parse(GOOD)
    for raw in ("/v1/acme/contacts?x=1", "//v1/acme/./contacts", "/v1/acme/%63ontacts#f", "/v1/acme/x/../contacts;a=b"):
        for _ in range(2):  # cold, then remembered
            npath, hit = p.route_for_request("POST", raw)
            assert npath == normalize_path(raw) == "/v1/acme/contacts"
            assert hit is not None and hit[0].name == "contacts.create" and hit[1].group("tenant") == "acme"
        assert p.route_for_request("GET", raw)[1] is None
    for i in range(p.ROUTE_MEMO_SIZE + 10):  # unique ids: the memo is cleared, never grows past its size
        assert p.route_for_request("POST", f"/v1/t{i}/contacts")[1] is not None
    assert len(p._route_memo) <= p.ROUTE_MEMO_SIZE


def test_shipped_packs_load_and_check():
    packs, errors = load_dir(RULES)
    assert not errors
    assert "m365" in {p.id for p in packs}
    ok, report = check_dir(RULES)
    assert ok and "m365" in report
    assert main(["check", str(RULES)]) == 0


def test_cli_reports_a_broken_pack(tmp_path: Path, capsys):
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "bad.yaml").write_text(GOOD.replace("scheme: words", "scheme: nope"))
    assert main(["check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "bad.yaml:8: scheme: unknown scheme 'nope'" in err


def test_duplicate_pack_ids_are_refused(tmp_path: Path):
    (tmp_path / "a.yaml").write_text("id: same\n" + GOOD)
    (tmp_path / "b.yaml").write_text("id: same\n" + GOOD)
    packs, errors = load_dir(tmp_path)
    assert len(errors) == 2 and not packs
