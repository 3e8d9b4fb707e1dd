"""One root error with a stable code.

Messages are built from codes, rule names and counts, never from request values: an error may be
logged, written to the audit file or sent to the client.
"""

from __future__ import annotations


class CloakgateError(Exception):
    """Root of every error the gateway turns into a local refusal."""

    code: str = "cloakgate.internal"
    status_hint: int = 500

    def __init__(self, message: str = "", *, code: str | None = None, status_hint: int | None = None):
        super().__init__(message or self.__class__.__doc__ or "")
        if code is not None:
            self.code = code
        if status_hint is not None:
            self.status_hint = status_hint

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class BodyError(CloakgateError):
    """The request body cannot be read as its declared type."""

    code = "cloakgate.body.malformed"
    status_hint = 400


class FieldError(CloakgateError):
    """A selected field cannot be protected."""

    code = "cloakgate.field.malformed"
    status_hint = 422


class KeyUnavailable(CloakgateError):
    """No data key is available for this rule pack."""

    code = "cloakgate.key.unavailable"
    status_hint = 503


class RuleError(CloakgateError):
    """A rule pack is invalid."""

    code = "cloakgate.rules.invalid"
    status_hint = 500


class InvalidToken(Exception):
    """A token failed to parse or authenticate. Deliberately opaque: no reason, no detail."""
