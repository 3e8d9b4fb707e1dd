"""The guard: refuses in-scope requests that the gateway did not handle.

It is added to mitmproxy's addon chain directly (not through the script) whenever no ready gateway
is in the chain: when the gateway leaves it (its ``done``: the script unloaded, or a reload that
fails), and while a gateway whose configuration failed stands in it (that one leaves requests
unmarked). A ready gateway takes it out again. Any request to a
host of the last good rule packs that reaches the guard without the gateway's mark is refused:
defence in depth against every path that would skip the gateway's hook.
"""

from __future__ import annotations

from mitmproxy import ctx, http

from .flows import M_SEEN, logger, refuse
from .state import SHARED

CODE = "cloakgate.gateway.unavailable"


class Guard:
    name = "cloakgate.guard"

    def _in_scope(self, flow: http.HTTPFlow) -> bool:
        return SHARED.scope.pack_for(flow) is not None

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        try:
            if flow.response or flow.error or not flow.live:
                return
            # A replay runs the hooks again on the same flow: a mark from an earlier pass must not count.
            flow.metadata.pop(M_SEEN, None)
            if getattr(getattr(ctx, "options", None), "stream_large_bodies", None) and self._in_scope(flow):
                # The gateway refuses this option; without it, someone set it. mitmproxy would stream
                # a large body out from its buffer before the request hook could refuse.
                logger.error("cloakgate guard: stream_large_bodies is set; protected request killed")
                flow.kill()
            elif flow.request.stream and self._in_scope(flow):  # an unstreamed request needs no look-up
                flow.request.stream = False
        except Exception:  # never let a request slip past on an error
            flow.kill()

    def request(self, flow: http.HTTPFlow) -> None:
        try:
            if flow.response or flow.error or not flow.live or flow.metadata.get(M_SEEN):
                return
            if self._in_scope(flow):
                logger.error("cloakgate guard: gateway did not handle a protected request; refused")
                refuse(flow, CODE, 503, "the protection gateway is not loaded or not configured", None, None)
        except Exception:
            flow.kill()
