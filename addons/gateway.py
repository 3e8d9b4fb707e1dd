"""cloakgate for mitmproxy: ``mitmdump -s addons/gateway.py`` (from the repository root or anywhere).

Only imports and the addon list live here; the gateway is the ``cloakgate`` package beside this file.
"""

import sys
from pathlib import Path

_here = Path(__file__).resolve().parent
for _p in (_here, _here.parent / "keys"):
    if str(_p) not in sys.path:
        sys.path.append(str(_p))  # for a mitmproxy without `pip install -e .`; an installed copy wins

from cloakgate.mitm.contentview import register_contentviews  # noqa: E402
from cloakgate.mitm.gateway import Gateway  # noqa: E402

register_contentviews()
addons = [Gateway()]
