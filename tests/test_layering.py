"""The dependency rules of the code base, enforced: cores are pure, keys never import the gateway."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text("utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def files(*parts: str) -> list[Path]:
    return sorted((REPO.joinpath(*parts)).rglob("*.py"))


@pytest.mark.parametrize("path", files("addons", "cloakgate", "core"), ids=lambda p: p.name)
def test_gateway_core_is_pure(path: Path):
    bad = {m for m in imports(path) if m.split(".")[0] in {"mitmproxy", "socket", "asyncio", "subprocess", "requests"}}
    assert not bad, f"{path} imports {bad}"


@pytest.mark.parametrize("path", files("keys"), ids=lambda p: str(p.relative_to(REPO)))
def test_keys_never_import_the_gateway_or_mitmproxy(path: Path):
    bad = {m for m in imports(path) if m.split(".")[0] in {"mitmproxy", "cloakgate"}}
    assert not bad, f"{path} imports {bad}"


@pytest.mark.parametrize("path", files("addons", "cloakgate"), ids=lambda p: str(p.relative_to(REPO)))
def test_only_adapters_import_mitmproxy(path: Path):
    if "mitm" in path.relative_to(REPO / "addons" / "cloakgate").parts[:1]:
        return
    assert not {m for m in imports(path) if m.split(".")[0] == "mitmproxy"}, path
