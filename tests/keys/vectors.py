"""Shared helpers of the attestation tests: where the vectors are, fixed instants, fact look-ups."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).resolve().parents[2].parent / "shared" / "vectors"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def lookup(doc: Any, path: str) -> Any:
    """A dotted path into nested claims: ``a.b.0.c``."""
    for part in path.split("."):
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc
