"""The key service: runs in the TEE, holds the sealed master key and the data keys, releases them
over attested TLS to gateways whose evidence satisfies the release policy.

Modules: ``server`` (TLS 1.3 HTTP), ``app`` (the protocol, no sockets), ``state`` (state dir),
``store`` (data keys), ``custodians`` (TOTP quorum), ``policy`` (release policy), ``sealing``,
``ratls`` (certificate with evidence), ``wrap`` (key wrapping to the client's ephemeral key),
``evidence`` (verifier dispatch), ``audit``, ``cbor``, ``tee`` (provider and sealing per TEE).
"""
