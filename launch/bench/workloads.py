"""The benchmark's Outlook-like workloads: what the fake Graph returns and what the client sends.

Responses hold tokens exactly as the gateway writes them (made with cloakgate's own core and the
very keys the gateway holds: released by the key service, or derived from the same development key
ring file; see ``keysource``), so the gateway reveals real tokens:

- ``list``: ``GET /v1.0/me/messages?$top=10``, ten Graph messages whose subject, body (HTML),
  sender and recipient names are word tokens, plus a ``bodyPreview`` cut at 255 characters the way
  the SaaS cuts it (so truncated tokens appear too). Several hundred tokens per response.
- ``light``: ``GET /v1.0/me/messages?$select=subject&$top=50``, fifty single-token subjects
  (deterministic tokens).
- ``write``: ``POST /v1.0/me/messages`` and ``POST /v1.0/me/sendMail`` in turn, plaintext bodies
  with 11 fields the M365 pack protects (subject, HTML body, 9 display names). The fake Graph
  echoes a created message (201) and accepts sendMail (202, empty).

Everything is generated from a fixed seed: the client and the upstream build the same data.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from typing import Any

HOST = "graph.microsoft.com"
PACK = "m365"  # the rule pack that applies to HOST
LIST_TARGET = "/v1.0/me/messages?$top=10"
LIGHT_TARGET = "/v1.0/me/messages?$select=subject&$top=50"
MESSAGES_TARGET = "/v1.0/me/messages"
SENDMAIL_TARGET = "/v1.0/me/sendMail"
WORKLOADS = ("list", "light", "write")

_VOCAB = (
    "the quarterly report budget meeting tomorrow please review attached draft contract customer "
    "project deadline update schedule invoice payment approval team office travel agenda minutes "
    "proposal revenue forecast hiring interview candidate feedback release planning roadmap design "
    "security audit compliance vendor renewal pricing discount order delivery shipment warehouse "
    "support ticket escalation incident outage postmortem action items owner status green yellow "
    "red risk mitigation summary notes call friday monday thursday morning afternoon lunch coffee "
    "thanks regards best kind hello dear colleague manager director board slides numbers figures "
    "spreadsheet account balance transfer bank wire reference number address phone mobile birthday "
    "party holiday vacation leave sick doctor appointment health insurance claim policy benefits "
    "salary bonus review performance goals objectives training course certificate conference "
    "keynote speaker venue hotel booking flight train ticket receipt expense reimbursement"
).split()
_FIRST = "Anna Ben Clara David Emma Felix Greta Hugo Ida Jonas Karla Lukas Mia Noah Olga Paul".split()
_LAST = "Schmidt Meyer Weber Wagner Becker Hoffmann Koch Richter Klein Wolf Braun Neumann".split()


def _sentence(rng: random.Random, n: int) -> str:
    words = [rng.choice(_VOCAB) for _ in range(n)]
    words[0] = words[0].capitalize()
    return " ".join(words) + rng.choice([".", ".", "!", "?"])


def _text(rng: random.Random, words: int) -> str:
    out: list[str] = []
    left = words
    while left > 0:
        n = min(left, rng.randint(5, 12))
        out.append(_sentence(rng, n))
        left -= n
    return " ".join(out)


def _person(rng: random.Random) -> dict[str, str]:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    return {"name": f"{first} {last}", "address": f"{first.lower()}.{last.lower()}@contoso.example"}


def _recips(rng: random.Random, n: int) -> list[dict[str, dict[str, str]]]:
    return [{"emailAddress": _person(rng)} for _ in range(n)]


# --- requests the client sends (plaintext; the gateway protects them on the way in) --------------


def message_doc(rng: random.Random) -> dict:
    """A Graph message with 11 fields the M365 pack protects."""
    return {
        "subject": _sentence(rng, rng.randint(4, 8)),
        "importance": "normal",
        "body": {
            "contentType": "html",
            "content": f"<html><body><p>{_text(rng, 40)}</p><p>{_sentence(rng, 3)}</p></body></html>",
        },
        "toRecipients": _recips(rng, 4),
        "ccRecipients": _recips(rng, 3),
        "bccRecipients": _recips(rng, 1),
        "replyTo": _recips(rng, 1),
        "from": {"emailAddress": _person(rng)},
    }


PROTECTED_FIELDS_PER_POST = 11  # subject, body.content, 4 to, 3 cc, 1 bcc, 1 replyTo ... (+ from)


def _http(method: str, target: str, body: bytes | None = None) -> bytes:
    head = [
        f"{method} {target} HTTP/1.1",
        f"Host: {HOST}",
        "User-Agent: cloakgate-bench/1",
        "Accept: application/json",
    ]
    if body is not None:
        head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + (body or b"")


def requests_for(workload: str, n_distinct: int = 64, seed: int = 7) -> list[bytes]:
    """The raw HTTP/1.1 requests of a workload, cycled by the load generator."""
    if workload == "list":
        return [_http("GET", LIST_TARGET)]
    if workload == "light":
        return [_http("GET", LIGHT_TARGET)]
    if workload == "write":
        rng = random.Random(seed)
        out = []
        for i in range(n_distinct):
            doc = message_doc(rng)
            if i % 2:
                body = json.dumps({"message": doc, "saveToSentItems": True}).encode()
                out.append(_http("POST", SENDMAIL_TARGET, body))
            else:
                out.append(_http("POST", MESSAGES_TARGET, json.dumps(doc).encode()))
        return out
    raise ValueError(f"unknown workload {workload!r} (want one of {', '.join(WORKLOADS)})")


# --- responses the fake Graph returns (tokens as the gateway writes them) ------------------------


@dataclass(frozen=True)
class Bodies:
    list_body: bytes
    light_body: bytes
    list_tokens: int  # complete tokens in the list response
    list_truncated: int  # tokens cut short by bodyPreview
    light_tokens: int


def build_bodies(ring: Any, seed: int = 11) -> Bodies:
    """The responses, their tokens made with the primary key of ``ring`` (a cloakgate key ring)."""
    from cloakgate.core import schemes, tokens

    key = ring.primary(PACK)
    words = schemes.Words()
    html = schemes.Words(html=True)
    det = schemes.Deterministic()
    rng = random.Random(seed)

    def w(text: str) -> str:
        return words.protect(text, key, ring, os.urandom)

    msgs = []
    for i in range(10):
        subject = _sentence(rng, rng.randint(5, 9))
        text = _text(rng, 32)
        sender = _person(rng)
        content = (
            f'<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8"></head>'
            f"<body><div><p>{text}</p></div></body></html>"
        )
        msgs.append(
            {
                "@odata.etag": f'W/"CQAAABYAAAB{i:04d}"',
                "id": f"AAMkAGI2TG93AAA{i:06d}=",
                "createdDateTime": f"2024-05-{i + 1:02d}T08:15:00Z",
                "receivedDateTime": f"2024-05-{i + 1:02d}T08:15:02Z",
                "hasAttachments": False,
                "subject": w(subject),
                "bodyPreview": w(text)[:255],
                "importance": "normal",
                "isRead": bool(i % 3),
                "body": {"contentType": "html", "content": html.protect(content, key, ring, os.urandom)},
                "sender": {"emailAddress": {"name": w(sender["name"]), "address": sender["address"]}},
                "from": {"emailAddress": {"name": w(sender["name"]), "address": sender["address"]}},
                "toRecipients": [
                    {"emailAddress": {"name": w(p["name"]), "address": p["address"]}}
                    for p in (_person(rng), _person(rng))
                ],
                "ccRecipients": [],
            }
        )
    list_doc = {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users('me')/messages",
        "value": msgs,
        "@odata.nextLink": "https://graph.microsoft.com/v1.0/me/messages?$top=10&$skip=10",
    }
    list_body = json.dumps(list_doc).encode()

    light = [
        {
            "@odata.etag": f'W/"CQAAABYAAAC{i:04d}"',
            "id": f"AAMkAGI2TG94AAA{i:06d}=",
            "subject": det.protect(f"{rng.choice(_VOCAB)} {i}", key, ring, os.urandom),
        }
        for i in range(50)
    ]
    light_body = json.dumps(
        {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users('me')/messages(subject)",
            "value": light,
        }
    ).encode()

    complete = truncated = 0
    for m in tokens.TOKEN_RE.finditer(list_body):
        cand = m.group().decode()
        try:
            tokens.split(cand)
            complete += 1
        except Exception:
            truncated += 1
    return Bodies(list_body, light_body, complete, truncated, len(light))
