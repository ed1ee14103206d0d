"""Typed exceptions for API errors, chosen by the problem ``type`` the server returns.

Each is also the matching core error (``NotFound`` is an
:class:`~liquid.errors.ObjectNotFound`, hence a ``FileNotFoundError``), so code written
against the core keeps working against the API.
"""

from __future__ import annotations

from typing import Any

from liquid import errors


class ApiError(errors.LiquidError):
    """An error answer from the Liquid API (or an in-process client)."""

    def __init__(
        self,
        detail: str,
        *,
        field: str | None = None,
        status: int | None = None,
        type_: str | None = None,
        problem: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail, field=field)
        if status is not None:
            self.status = status
        if type_ is not None:
            self.type = type_
        self.problem = problem or {}

    def __str__(self) -> str:
        where = f" [{self.field}]" if self.field else ""
        return f"{self.status} {self.type}{where}: {self.detail}"


class BadRequest(ApiError, errors.InvalidInput):
    """400: malformed input; ``field`` names the part at fault."""


class InvalidRef(BadRequest, errors.InvalidRef):
    """400: a string that is not a well-formed ref."""


class DimensionMismatch(BadRequest, errors.DimensionMismatch):
    """422: an embedding's length differs from its namespace's dimension."""


class Unauthorized(ApiError, errors.Unauthorized):
    """401: missing, unknown or revoked key, or a bad or expired ref signature."""


class Forbidden(ApiError, errors.Forbidden):
    """403: the key may not do this (another tenant, legal hold, a disabled feature)."""


class NotFound(ApiError, errors.ObjectNotFound):
    """404: no such object, or one this key may not see."""


class Gone(ApiError, errors.ObjectGone):
    """410: the version was deleted or expired."""


class Conflict(ApiError, errors.Conflict):
    """409."""


class MethodNotAllowed(ApiError):
    """405: the route does not take this method."""

    type = "liquid:method-not-allowed"
    status = 405


class RateLimited(ApiError):
    """429: the tenant is over ``api.rate_limit``; retried for idempotent calls, and
    ``retry_after`` says (in seconds) when the server said to come back."""

    type = "liquid:rate-limited"
    status = 429
    retry_after: float | None = None


class TooLarge(ApiError, errors.TooLarge):
    """413: the body exceeds the server's maximum object size."""


class RangeNotSatisfiable(ApiError, ValueError):
    """416: the range lies outside the object."""

    type = "liquid:range-not-satisfiable"
    status = 416


class IntegrityError(ApiError, errors.IntegrityError):
    """502 (or a local check): the bytes do not match the recorded checksum."""


class ServerError(ApiError, OSError):
    """5xx without a more specific type."""

    type = "liquid:internal"
    status = 500


class Unavailable(ServerError, errors.StoreError):
    """503: a backend is unreachable; retried for idempotent calls."""


BY_TYPE: dict[str, type[ApiError]] = {
    "liquid:invalid-input": BadRequest,
    "liquid:invalid-ref": InvalidRef,
    "liquid:vector-dimension": DimensionMismatch,
    "liquid:unauthorized": Unauthorized,
    "liquid:forbidden": Forbidden,
    "liquid:not-found": NotFound,
    "liquid:gone": Gone,
    "liquid:conflict": Conflict,
    "liquid:method-not-allowed": MethodNotAllowed,
    "liquid:rate-limited": RateLimited,
    "liquid:too-large": TooLarge,
    "liquid:range-not-satisfiable": RangeNotSatisfiable,
    "liquid:integrity": IntegrityError,
    "liquid:store": Unavailable,
    "liquid:unavailable": Unavailable,
}
BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    410: Gone,
    413: TooLarge,
    416: RangeNotSatisfiable,
    422: DimensionMismatch,
    429: RateLimited,
    502: IntegrityError,
    503: Unavailable,
}


def from_problem(status: int, body: Any) -> ApiError:
    """The typed exception for a problem+json body (or any error body)."""
    problem = body if isinstance(body, dict) else {}
    type_ = problem.get("type") if isinstance(problem.get("type"), str) else None
    cls = BY_TYPE.get(type_ or "") or BY_STATUS.get(status) or (ServerError if status >= 500 else BadRequest)
    detail = problem.get("detail") or (str(body)[:500] if body else f"HTTP {status}")
    field = problem.get("field") if isinstance(problem.get("field"), str) else None
    return cls(str(detail), field=field, status=status, type_=type_, problem=problem)


def from_core(exc: errors.LiquidError) -> ApiError:
    """The client exception for a core error (in-process use and batch results)."""
    if isinstance(exc, ApiError):
        return exc
    cls = BY_TYPE.get(exc.type) or BY_STATUS.get(exc.status) or ServerError
    return cls(exc.detail, field=exc.field, status=exc.status, type_=exc.type)
