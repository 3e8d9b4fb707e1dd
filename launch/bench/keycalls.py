"""Key-service calls per request in steady state.

Today the gateway takes its keys from the local DEVELOPMENT key ring (``cloakgate_keys=dev``): it
derives every data key from a file at start-up and never calls a key service, so the count is zero
by construction, and the report says so rather than pretending to have counted.

Hook for the key service: once the gateway can take keys from it (issue "Key service in a TEE"),
implement ``read_counter`` to return the service's running count of key requests (for example from
the simulated service's own counter, or a ``cloakgate.status`` line), and start the gateway with the
matching ``cloakgate_keys`` option. ``measure`` then reads the counter around the steady-state run
and reports calls per request.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KeyCalls:
    per_request: float | None  # None: not measurable with this key source
    text: str  # what the report shows


def read_counter(key_source: str) -> int | None:
    """The key service's running count of key requests, or None when there is no key service."""
    if key_source == "dev":
        return None
    return None  # hook: read the key service's counter here once it exists


def measure(key_source: str, before: int | None, after: int | None, requests: int) -> KeyCalls:
    if key_source == "dev":
        return KeyCalls(0.0, "0 (dev key ring: keys derived locally at start-up, no key service)")
    if before is None or after is None or requests <= 0:
        return KeyCalls(None, f"not measured (no counter for key source {key_source!r})")
    per = (after - before) / requests
    return KeyCalls(per, f"{per:.4f} ({after - before} calls / {requests} requests)")
