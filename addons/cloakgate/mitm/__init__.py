"""Thin mitmproxy adapters: the only code of cloakgate that imports mitmproxy."""
