"""Tenants and API keys.

Keys look like ``lq_<prefix>_<secret>``: the prefix (8 hex chars) finds the row, the
secret (43 URL-safe chars, 256 bits) is checked against its stored SHA-256 in constant
time. A key is shown once, at creation; the catalog cannot give it back.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError as DBIntegrityError

from liquid.catalog import db
from liquid.catalog.models import ApiKey, Tenant
from liquid.errors import Conflict, InvalidInput, ObjectNotFound, Unauthorized
from liquid.events import log as events
from liquid.refs import check_slug

KEY_PREFIX = "lq_"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a tenant's key, or an operator key (``tenant`` is None)."""

    tenant: str | None
    role: str
    key_prefix: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class Tenancy:
    """Tenant and key administration on the catalog."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime]) -> None:
        self.engine = engine
        self.clock = clock

    def create_tenant(self, tenant: str, *, display_name: str = "", actor: str | None = None) -> None:
        check_slug(tenant, "tenant")
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(Tenant).values(id=tenant, display_name=display_name, created_at=self.clock())
                )
                events.append(
                    conn, events.NewEvent(events.TENANT_CREATED, self.clock(), tenant_id=tenant, actor=actor)
                )
        except DBIntegrityError:
            raise Conflict(f"tenant {tenant!r} already exists", field="tenant") from None

    def tenant_exists(self, tenant: str) -> bool:
        with db.reading(self.engine) as conn:
            return conn.execute(select(Tenant.id).where(Tenant.id == tenant)).first() is not None

    def list_tenants(self) -> list[str]:
        with db.reading(self.engine) as conn:
            return list(conn.scalars(select(Tenant.id).order_by(Tenant.id)))

    def create_api_key(
        self, tenant: str | None, *, admin: bool = False, name: str = "", actor: str | None = None
    ) -> str:
        """Create a key and return it in full; only its hash is stored."""
        if admin == (tenant is not None):
            raise InvalidInput(
                "give a tenant for a tenant key, or admin=True (and no tenant) for an operator key"
            )
        if tenant is not None and not self.tenant_exists(check_slug(tenant, "tenant")):
            raise ObjectNotFound(f"tenant {tenant!r} does not exist; create it first", field="tenant")
        prefix = secrets.token_hex(4)
        secret = secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            conn.execute(
                insert(ApiKey).values(
                    prefix=prefix,
                    secret_sha256=_digest(secret),
                    tenant_id=tenant,
                    role="admin" if admin else "tenant",
                    name=name,
                    created_at=self.clock(),
                )
            )
            events.append(
                conn,
                events.NewEvent(
                    events.APIKEY_CREATED,
                    self.clock(),
                    tenant_id=tenant,
                    actor=actor,
                    data={"prefix": prefix, "role": "admin" if admin else "tenant", "name": name},
                ),
            )
        return f"{KEY_PREFIX}{prefix}_{secret}"

    def revoke_api_key(self, prefix: str, *, actor: str | None = None) -> None:
        with self.engine.begin() as conn:
            row = conn.execute(
                update(ApiKey)
                .where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
                .values(revoked_at=self.clock())
                .returning(ApiKey.tenant_id)
            ).first()
            if row is None:
                raise ObjectNotFound(f"no active API key with prefix {prefix!r}", field="prefix")
            events.append(
                conn,
                events.NewEvent(
                    events.APIKEY_REVOKED,
                    self.clock(),
                    tenant_id=row[0],
                    actor=actor,
                    data={"prefix": prefix},
                ),
            )

    def authenticate(self, key: str) -> Principal:
        """The principal for a presented key; every failure is the same Unauthorized."""
        denied = Unauthorized("missing, unknown or revoked API key")
        parts = key.split("_", 2) if isinstance(key, str) else []
        if len(parts) != 3 or parts[0] + "_" != KEY_PREFIX:
            raise denied
        _, prefix, secret = parts
        with db.reading(self.engine) as conn:
            row = conn.execute(
                select(ApiKey.secret_sha256, ApiKey.tenant_id, ApiKey.role, ApiKey.revoked_at).where(
                    ApiKey.prefix == prefix
                )
            ).first()
        if (
            row is None
            or row.revoked_at is not None
            or not hmac.compare_digest(row.secret_sha256, _digest(secret))
        ):
            raise denied
        return Principal(tenant=row.tenant_id, role=row.role, key_prefix=prefix)
