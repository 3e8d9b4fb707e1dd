"""State that outlives a reload of the gateway script.

mitmproxy caches this module in ``sys.modules``: a script reload re-imports ``addons/gateway.py``
but not this. The guard reads the last good set of protected hosts from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .flows import Scope


@dataclass
class Shared:
    scope: Scope = field(default_factory=Scope)


SHARED = Shared()
