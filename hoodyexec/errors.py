"""One error hierarchy for the whole kit.

Every error carries the HTTP status it maps to, so the HTTP layer turns any
``HoodyError`` into a JSON body ``{"error": ...}`` in one place. This module is a
leaf: it imports nothing internal.
"""

from __future__ import annotations


class HoodyError(Exception):
    """Base class: a message for humans and the HTTP status it maps to."""

    status = 500

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        **extra: object,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.headers = headers or {}
        self.extra = extra

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"error": self.message}
        body.update(self.extra)
        return body


class ConfigError(HoodyError):
    """A setting is unknown, ill-typed or inconsistent; raised before start."""


class BadRequest(HoodyError):
    status = 400


class Unauthorized(HoodyError):
    status = 401


class Forbidden(HoodyError):
    status = 403


class NotFound(HoodyError):
    status = 404


class MethodNotAllowed(HoodyError):
    status = 405


class ControlUnavailable(HoodyError):
    """The control worker could not be reached in time."""

    status = 503


class ProtocolError(HoodyError):
    """A peer sent a frame that is not a valid message."""
