"""cloakgate: field-level encryption gateway for SaaS.

``cloakgate.core`` is pure (no mitmproxy, no I/O); ``cloakgate.mitm`` holds the thin mitmproxy adapters.
"""

__version__ = "0.1.0"
