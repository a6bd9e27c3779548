"""netwarden's errors, one root: every error netwarden raises on purpose is a NetwardenError.

Pure (no imports): the model, the core and the adapters all raise from here, so a caller catches
one class per meaning, whichever layer noticed it.
"""

from __future__ import annotations


class NetwardenError(Exception):
    """The root of the errors netwarden raises on purpose."""


class ConfigError(NetwardenError, ValueError):
    """A configuration value is missing, unknown or malformed; the message names the source and every problem."""


class HistoryError(NetwardenError, ValueError):
    """A policy's history annotation is not something netwarden wrote (or is corrupted): netwarden/model/history.py."""


class ApiError(NetwardenError):
    """A Kubernetes API call failed after the adapter's retries; `status` is the HTTP status (0: no answer).

    The adapter (netwarden/platform/kube.py) raises the subclass that says what happened, so callers catch a
    meaning (NotFound, Conflict) instead of reading status codes of a client library's exception.
    """

    status: int = 0
    reason: str = ""
    #: What the API server said (its Status message: which webhook refused, and why), or "".
    message: str = ""

    def __init__(self, message: str = "", *, status: int | None = None) -> None:
        super().__init__(message)
        self.reason = self.message = message
        if status is not None:
            self.status = status


class NotFound(ApiError):
    """404: the object (or the API) is not there."""

    status = 404


class Conflict(ApiError):
    """409: the object changed under us, or exists; re-read and decide again."""

    status = 409


class Invalid(ApiError):
    """422: the API refused the object or patch (a failed JSON Patch `test` op among them)."""

    status = 422


class Forbidden(ApiError):
    """403: RBAC does not grant the call."""

    status = 403


class Transient(ApiError):
    """429, 5xx or no answer: worth trying again later."""


def api_error_class(status: int) -> type[ApiError]:
    """The project's error for an HTTP status."""
    if status == 404:
        return NotFound
    if status == 409:
        return Conflict
    if status == 422:
        return Invalid
    if status == 403:
        return Forbidden
    if status == 0 or status == 429 or status >= 500:
        return Transient
    return ApiError
