from __future__ import annotations

import os
from pathlib import Path

import pytest

from cloakgate.core.keyring import DataKey, StaticKeyRing

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "rules"
SHARED = REPO.parent / "shared"


def make_key(kid: str = "abc", pack: str = "test", version: int = 1, seed: int = 1) -> DataKey:
    return DataKey(kid, pack, version, bytes([seed]) * 32)


@pytest.fixture
def ring() -> StaticKeyRing:
    return StaticKeyRing([make_key("abc", "test"), make_key("m3a", "m365", seed=7)])


@pytest.fixture
def rand():
    return os.urandom


@pytest.fixture(autouse=True)
def _private_home(tmp_path_factory, monkeypatch):
    """Defaults like ~/.cloakgate and ~/.mitmproxy must not touch the real home during tests."""
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
