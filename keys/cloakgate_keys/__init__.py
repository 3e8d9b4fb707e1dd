"""cloakgate key service, its client, and attestation evidence providers and verifiers.

Never imports the gateway (``cloakgate``) nor mitmproxy.
"""

__version__ = "0.1.0"
