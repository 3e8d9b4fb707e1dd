"""A mitmweb/console content view that lists the tokens in a body without decrypting anything."""

from __future__ import annotations

from mitmproxy import contentviews

from ..core import tokens
from ..core.errors import InvalidToken

SCHEMES = {"a": "aead", "d": "deterministic", "w": "words", "e": "email"}


class CloakgateContentview(contentviews.Contentview):
    name = "cloakgate"
    syntax_highlight = "yaml"

    def prettify(self, data: bytes, metadata: contentviews.Metadata) -> str:
        lines = []
        counts: dict[tuple[str, str], int] = {}
        for m in tokens.TOKEN_RE.finditer(data):
            cand = m.group().decode("ascii")
            try:
                p = tokens.parse_header(cand)
            except InvalidToken:
                continue
            state = "complete" if len(cand) >= p.total_len else "truncated"
            key = (SCHEMES[p.scheme], p.kid)
            counts[key] = counts.get(key, 0) + 1
            if len(lines) < 200:
                lines.append(f"- {{offset: {m.start()}, scheme: {SCHEMES[p.scheme]}, kid: {p.kid}, {state}: true}}")
        head = ["# cloakgate tokens (not decrypted)"]
        head += [f"# {s} with key {k}: {n}" for (s, k), n in sorted(counts.items())]
        return "\n".join(head + (lines or ["# none"]))

    def render_priority(self, data: bytes, metadata: contentviews.Metadata) -> float:
        return 0.5 if tokens.TOKEN_RE.search(data[:65536]) else 0


def register_contentviews() -> None:
    contentviews.add(CloakgateContentview)
