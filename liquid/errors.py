"""One small error hierarchy.

Every error Liquid raises on purpose is a :class:`LiquidError`, and each subclass is
also the matching built-in, so ``except FileNotFoundError`` keeps working for callers
that do not know Liquid. The API maps each class to one problem+json ``type``
(:attr:`LiquidError.type`), a stable string clients may switch on.
"""

from __future__ import annotations


class LiquidError(Exception):
    """Base of every deliberate Liquid error."""

    type: str = "about:blank"
    status: int = 500

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.detail!r}, field={self.field!r})"


class InvalidInput(LiquidError, ValueError):
    """Malformed input: a ref, key, header, body or option."""

    type = "liquid:invalid-input"
    status = 400


class InvalidRef(InvalidInput):
    """A string that is not a well-formed ``liquid://tenant/namespace/key@version``."""

    type = "liquid:invalid-ref"


class DimensionMismatch(InvalidInput):
    """An embedding's length differs from the dimension its namespace was fixed at by its first write."""

    type = "liquid:vector-dimension"
    status = 422


class ConfigError(LiquidError, ValueError):
    """Invalid configuration: names the key and the reason."""

    type = "liquid:config"
    status = 500


class PolicyError(LiquidError, ValueError):
    """Invalid policy document."""

    type = "liquid:policy"
    status = 400


class ObjectNotFound(LiquidError, FileNotFoundError):
    """No such object, or one the caller may not see (the two are indistinguishable)."""

    type = "liquid:not-found"
    status = 404


class ObjectGone(LiquidError, FileNotFoundError):
    """The object existed but was deleted or expired; its bytes are never served again."""

    type = "liquid:gone"
    status = 410


class IntegrityError(LiquidError, OSError):
    """Stored bytes do not match the recorded checksum or size."""

    type = "liquid:integrity"
    status = 502


class TooLarge(LiquidError, ValueError):
    """A body exceeds the configured maximum object size."""

    type = "liquid:too-large"
    status = 413


class RateLimited(LiquidError):
    """A tenant sent more requests than ``api.rate_limit`` allows; ``retry_after`` says when to come back."""

    type = "liquid:rate-limited"
    status = 429

    def __init__(self, detail: str, *, retry_after: float, field: str | None = None) -> None:
        super().__init__(detail, field=field)
        self.retry_after = retry_after


class Unauthorized(LiquidError, PermissionError):
    """Missing, unknown or revoked credentials."""

    type = "liquid:unauthorized"
    status = 401


class Forbidden(LiquidError, PermissionError):
    """Valid credentials without the right to do this."""

    type = "liquid:forbidden"
    status = 403


class ClassificationRefused(LiquidError, PermissionError):
    """This deployment may not store an object of this classification anywhere it would go."""

    type = "liquid:classification-refused"
    status = 403


class Conflict(LiquidError, ValueError):
    """The request conflicts with current state (e.g. a tenant that already exists)."""

    type = "liquid:conflict"
    status = 409


class StoreError(LiquidError, OSError):
    """A backend failed in a way Liquid cannot hide (unreachable, refused, misconfigured)."""

    type = "liquid:store"
    status = 503


class StoreUnavailable(StoreError):
    """A backend is failing or saturated, so Liquid fails fast instead of waiting: retry later.

    ``retry_after`` (seconds) becomes the response's ``Retry-After``; ``backend`` names the
    backend for logs and metrics only (tenants never see it).
    """

    type = "liquid:unavailable"

    def __init__(
        self, detail: str, *, retry_after: float = 5.0, backend: str | None = None, field: str | None = None
    ) -> None:
        super().__init__(detail, field=field)
        self.retry_after = retry_after
        self.backend = backend


class KeyUnavailable(StoreError):
    """An encryption key needed to read or write an object is not configured or does not match."""

    type = "liquid:key-unavailable"


class MissingDependency(LiquidError, ImportError):
    """An optional dependency is not installed; the message gives the pip command."""

    type = "liquid:missing-dependency"
    status = 500
