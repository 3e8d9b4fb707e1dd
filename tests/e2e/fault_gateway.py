"""The gateway with an exception injected into the core (for the fail-closed test)."""

import cloakgate.mitm.gateway as gateway_module
from cloakgate.mitm.gateway import Gateway


class _Boom:
    @staticmethod
    def protect_request(*args, **kwargs):
        raise RuntimeError("injected failure mentioning Zaphodius")


gateway_module.core_protect = _Boom
addons = [Gateway()]
