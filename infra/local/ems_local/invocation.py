"""What can go wrong when the local cloud invokes a function, and what API Gateway answers for it.

Shared by every caller of functions (the HTTP API now; the WebSocket API, EventBridge and the
scheduler later), so each maps a failure the same way Lambda reports it.
"""

from __future__ import annotations


class InvocationError(Exception):
    """A function could not give a result. `status` is what API Gateway answers in its place."""

    status = 500


class FunctionError(InvocationError):
    """The handler (or its module's init) raised. The message is Lambda's errorMessage, so an
    authorizer's `raise Exception("Unauthorized")` reads as "Unauthorized" to the gateway."""

    def __init__(self, message: str, error_type: str = "Exception", stack_trace: list[str] | None = None):
        super().__init__(message)
        self.error_type = error_type
        self.stack_trace = stack_trace or []


class FunctionTimeout(InvocationError):
    """The handler ran past the function's Timeout; its worker was stopped."""

    status = 504


class FunctionCrashed(InvocationError):
    """The worker process died mid-invocation (a segfault, os._exit, out of memory)."""

    status = 502


class Throttled(InvocationError):
    """Every worker the function's concurrency limit allows was busy for too long."""

    status = 429
