"""Domain exceptions. Services raise these; `ems.core.http` maps them to API.md's error body once."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a caller can act on. `field` names the input at fault, when there is one."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def body(self) -> dict[str, dict[str, str | None]]:
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}


class BadRequest(DomainError):
    status, code = 400, "bad_request"


class Unauthorized(DomainError):
    status, code = 401, "unauthorized"


class Forbidden(DomainError):
    status, code = 403, "forbidden"


class NotFound(DomainError):
    status, code = 404, "not_found"


class Conflict(DomainError):
    status, code = 409, "conflict"


class PayloadTooLarge(DomainError):
    status, code = 413, "payload_too_large"


class Invalid(DomainError):
    """Well-formed input that breaks a rule: a limit, a reference to something that does not exist."""

    status, code = 422, "invalid"


class TooManyRequests(DomainError):
    status, code = 429, "too_many_requests"
