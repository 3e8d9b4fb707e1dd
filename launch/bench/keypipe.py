"""Data keys from the benchmark process to the fake upstream, through the upstream's stdin.

The upstream makes its tokens with the very keys the gateway got from the key service, so it needs
their material. A pipe carries it: key material never touches a file (the project's rule), nor a
command line (``/proc/<pid>/cmdline`` is readable by every user). One JSON document, read to EOF.
"""

from __future__ import annotations

import base64
import json
from typing import Any, BinaryIO


def encode(ring: Any) -> bytes:  # cloakgate.core.keyring.StaticKeyRing
    """Every key of ``ring`` as the bytes to write into the pipe."""
    return json.dumps(
        {
            "keys": [
                {
                    "kid": k.kid,
                    "pack": k.pack,
                    "version": k.version,
                    "material": base64.b64encode(k.material).decode(),
                }
                for k in ring.keys()
            ]
        }
    ).encode()


def read(stream: BinaryIO) -> Any:
    """The key ring the benchmark wrote into ``stream`` (cloakgate types stay inside this function)."""
    from cloakgate.core.keyring import DataKey, StaticKeyRing

    doc = json.loads(stream.read())
    return StaticKeyRing(
        DataKey(k["kid"], k["pack"], k["version"], base64.b64decode(k["material"], validate=True))
        for k in doc["keys"]
    )
