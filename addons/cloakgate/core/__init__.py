"""The pure core: rule packs, matching, body codecs, schemes, token format, reveal.

Nothing in here imports mitmproxy, reads a clock, draws randomness of its own or does I/O beyond
reading rule files on request; all of that is injected.
"""
