"""Errors of the key service. One root with a stable ``code`` and an HTTP status hint.

Messages are built from codes only, never from request values: they go to clients and logs.
"""

from __future__ import annotations


class ServiceError(Exception):
    code: str = "cloakgate_keys.service.internal"
    status_hint: int = 500

    def __init__(self, code: str | None = None, *, status_hint: int | None = None):
        if code is not None:  # a detail under the class's code: "cloakgate_keys.service.denied.policy"
            self.code = f"{type(self).code}.{code}"
        if status_hint is not None:
            self.status_hint = status_hint
        super().__init__(self.code)


class BadRequest(ServiceError):
    code = "cloakgate_keys.service.bad_request"
    status_hint = 400


class Unauthorized(ServiceError):
    code = "cloakgate_keys.service.unauthorized"
    status_hint = 401


class Denied(ServiceError):
    code = "cloakgate_keys.service.denied"
    status_hint = 403


class NotFound(ServiceError):
    code = "cloakgate_keys.service.not_found"
    status_hint = 404


class Conflict(ServiceError):
    code = "cloakgate_keys.service.conflict"
    status_hint = 409


class Busy(ServiceError):
    code = "cloakgate_keys.service.busy"
    status_hint = 503


class StateError(ServiceError):
    """The state directory cannot be read, unsealed or written."""

    code = "cloakgate_keys.service.state"
    status_hint = 500
