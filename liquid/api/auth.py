"""Who is calling, and for which tenant.

* ``Authorization: Bearer lq_<prefix>_<secret>``: a tenant key acts on its own tenant
  only; an admin (operator) key acts on the tenant named by ``X-Liquid-Tenant`` (on
  ``/v1/refs/...`` routes it may leave the header out and act on the ref's tenant).
  A tenant key that names another tenant in ``X-Liquid-Tenant`` gets 403, whether or
  not that tenant exists.
* Signed refs: ``GET``/``HEAD /v1/refs/{ref}?sig=...&exp=...`` need no key. The
  signature is ``base64url(HMAC-SHA256(api.signing_secret, "liquid-ref-v1\\n" + uri +
  "\\n" + exp))`` and grants reading that one version until ``exp`` (Unix seconds).
  ``POST /v1/refs:sign`` makes one for a ref of the caller's tenant.

Verified keys are remembered for ``api.auth_cache_ttl`` seconds (by a digest of the
key) so a hot read costs no catalog round trip for authentication; a revoked key
keeps working at most that long on a running server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from liquid.errors import Forbidden, InvalidInput, Unauthorized
from liquid.refs import ResultRef, check_slug
from liquid.tenancy import Principal, Tenancy

TENANT_HEADER = "X-Liquid-Tenant"
_SIGN_CONTEXT = b"liquid-ref-v1\n"


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated principal and the tenant it acts on."""

    principal: Principal
    tenant: str


class Authenticator:
    """API-key checks with a short in-process cache of verified keys."""

    def __init__(
        self, tenancy: Tenancy, *, cache_ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.tenancy = tenancy
        self.cache_ttl = cache_ttl
        self.clock = clock
        self._cache: dict[str, tuple[Principal, float]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Authenticator(cache_ttl={self.cache_ttl}, cached={len(self._cache)})"

    async def authenticate(self, key: str) -> Principal:
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        now = self.clock()
        hit = self._cache.get(digest)
        if hit is not None and hit[1] > now:
            return hit[0]
        principal = await run_in_threadpool(self.tenancy.authenticate, key)
        if self.cache_ttl > 0:
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache = {k: v for k, v in self._cache.items() if v[1] > now}
                self._cache[digest] = (principal, now + self.cache_ttl)
        return principal

    def forget(self) -> None:
        with self._lock:
            self._cache.clear()


def bearer_key(authorization: str | None) -> str | None:
    """The key from an ``Authorization: Bearer`` header, None if absent; 401 if malformed."""
    if authorization is None:
        return None
    scheme, _, key = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("use 'Authorization: Bearer lq_...'", field="Authorization")
    return key.strip()


def acting_tenant(principal: Principal, header: str | None, *, ref: ResultRef | None = None) -> str:
    """The tenant a request acts on (see the module docstring)."""
    if principal.is_admin:
        if header is not None:
            return check_slug(header, TENANT_HEADER)
        if ref is not None:
            return ref.tenant
        raise InvalidInput(
            f"an admin key must name the tenant in the {TENANT_HEADER} header", field=TENANT_HEADER
        )
    assert principal.tenant is not None
    if header is not None and header != principal.tenant:
        raise Forbidden(
            f"a tenant key acts only on its own tenant; drop {TENANT_HEADER}", field=TENANT_HEADER
        )
    return principal.tenant


class RefSigner:
    """HMAC signatures that let a ref be read without a key until an expiry."""

    def __init__(self, secret: bytes, *, max_ttl: float, clock: Callable[[], float] = time.time) -> None:
        if not secret:
            raise ValueError("the signing secret must not be empty")
        self._secret = secret
        self.max_ttl = max_ttl
        self.clock = clock

    def __repr__(self) -> str:
        return f"RefSigner(max_ttl={self.max_ttl})"

    def _mac(self, uri: str, exp: int) -> str:
        mac = hmac.new(self._secret, _SIGN_CONTEXT + f"{uri}\n{exp}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")

    def sign(self, ref: ResultRef, ttl: float) -> tuple[str, int]:
        """(signature, expiry in Unix seconds) for reading ``ref`` for ``ttl`` seconds."""
        if not 0 < ttl <= self.max_ttl:
            raise InvalidInput(f"ttl must be in (0, {self.max_ttl:g}] seconds, got {ttl:g}", field="ttl")
        exp = int(self.clock() + ttl)
        return self._mac(ref.uri, exp), exp

    def verify(self, ref: ResultRef, sig: str, exp: int) -> None:
        """Raise Unauthorized unless ``sig`` signs ``ref`` until ``exp`` and ``exp`` is in the future."""
        # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError, not a 401).
        if not hmac.compare_digest(self._mac(ref.uri, exp).encode(), sig.encode("utf-8", "surrogatepass")):
            raise Unauthorized("the ref signature does not match this ref and expiry", field="sig")
        if exp <= self.clock():
            raise Unauthorized(f"the signed ref expired at {exp} (Unix seconds)", field="exp")
