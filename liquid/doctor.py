"""``liquid doctor``: check a deployment's configuration and every server it names.

Each check is one line: its status, what was checked, and for a failure how to fix it::

    ok    config         settings valid (LIQUID_* environment, liquid.yaml)
    ok    catalog        PostgreSQL 18.1 reachable at postgresql+psycopg://liquid:***@db:5432/liquid
    FAIL  migrations     catalog at 0007, this version needs 0010 -> run `liquid db upgrade`
    ok    clock          0.03 s from the catalog's clock
    ok    store:cold     put, read and delete a probe object in s3://liquid-cold/prod?region=eu-west-1
    FAIL  policy tiers   policy 'archive-old' targets tier archive, which has no store -> set tiers.archive

The doctor never starts embedded servers: what is not configured is reported (``warn``) and
skipped. Probe objects live under ``.liquid-doctor/`` and are deleted again; a probe that
cannot be deleted fails its check (the store lacks the delete permission the mover needs).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Engine, create_engine, text

from liquid.config import CATALOG_STORE, Settings, redact_url
from liquid.errors import LiquidError
from liquid.stores import open_store, read_bytes, write_bytes
from liquid.stores.base import Store

Status = Literal["ok", "warn", "FAIL"]
#: Clock difference from the catalog beyond which leases, TTLs and policy ages go wrong.
MAX_SKEW = 2.0
PROBE_PREFIX = ".liquid-doctor"


@dataclass(frozen=True)
class Check:
    """One finding: ``hint`` says what to do when the status is not ``ok``."""

    name: str
    status: Status
    detail: str
    hint: str = ""

    def line(self) -> str:
        tail = f" -> {self.hint}" if self.hint and self.status != "ok" else ""
        return f"{self.status:<5} {self.name:<14} {self.detail}{tail}"


def redact(url: str) -> str:
    """``url`` without credentials (doctor output ends up in tickets)."""
    return redact_url(url)


def _reason(exc: BaseException) -> str:
    text_ = exc.detail if isinstance(exc, LiquidError) else f"{type(exc).__name__}: {exc}"
    return " ".join(str(text_).split())[:300]


class Doctor:
    """Runs the checks for one :class:`Settings`; ``clock`` is the local clock compared with the catalog's."""

    def __init__(self, settings: Settings, *, clock: Callable[[], datetime] | None = None) -> None:
        self.settings = settings
        self.clock = clock or (lambda: datetime.now(UTC))
        self.engine: Engine | None = None

    def __repr__(self) -> str:
        return f"Doctor(catalog={redact(self.settings.catalog_url or 'embedded')})"

    def run(self) -> Iterator[Check]:
        """Yield every check in order; later checks that need the catalog are skipped if it is down."""
        yield Check("config", "ok", "settings valid (LIQUID_* environment, liquid.yaml)")
        try:
            yield from self._catalog()
            yield from self._encryption()
            yield from self._stores()
            yield from self._policy_tiers()
        finally:
            if self.engine is not None:
                self.engine.dispose()

    # --- the catalog ---------------------------------------------------------------------------

    def _catalog(self) -> Iterator[Check]:
        url = self.settings.catalog_url
        if url is None:
            yield Check(
                "catalog", "warn", "catalog_url unset: Liquid would start embedded PostgreSQL; not checked",
                "set LIQUID_CATALOG_URL for a deployment",
            )  # fmt: skip
            return
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        try:
            # A short connect timeout: an unroutable host must fail the check, not hang the doctor.
            connect: dict[str, Any] = {"connect_timeout": 5}
            if self.settings.catalog_pooler == "transaction":
                connect["prepare_threshold"] = None  # see liquid.catalog.db.make_engine
            engine = create_engine(url, connect_args=connect, pool_size=1, max_overflow=0)
            with engine.connect() as conn:
                version = conn.execute(text("SHOW server_version")).scalar_one()
                db_now = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
                local = self.clock()
        except Exception as exc:
            yield Check(
                "catalog", "FAIL", f"cannot reach {redact(url)}: {_reason(exc)}",
                "check LIQUID_CATALOG_URL (host, port, user, password, database) and that PostgreSQL runs",
            )  # fmt: skip
            return
        self.engine = engine
        yield Check("catalog", "ok", f"PostgreSQL {version} reachable at {redact(url)}")
        yield self._migrations(engine)
        yield self._vector(engine)
        skew = abs((local - db_now).total_seconds())
        if skew > MAX_SKEW:
            yield Check(
                "clock", "FAIL", f"{skew:.1f} s from the catalog's clock (at most {MAX_SKEW:.0f} s)",
                "run NTP/chrony on this host and the database host; leases, TTLs and policy ages use both",
            )  # fmt: skip
        else:
            yield Check("clock", "ok", f"{skew:.2f} s from the catalog's clock")

    def _migrations(self, engine: Engine) -> Check:
        from liquid.catalog import db

        try:
            current, head = db.current_revision(engine), db.head_revision()
        except Exception as exc:
            return Check("migrations", "FAIL", f"cannot read the schema revision: {_reason(exc)}", "")
        if current == head:
            return Check("migrations", "ok", f"catalog at {current} (this version's head)")
        if current is None:
            return Check("migrations", "FAIL", "catalog has no schema", "run `liquid db upgrade`")
        return Check(
            "migrations", "FAIL", f"catalog at {current}, this version needs {head}",
            "run `liquid db upgrade` (or deploy the version that matches the catalog)",
        )  # fmt: skip

    def _vector(self, engine: Engine) -> Check:
        try:
            with engine.connect() as conn:
                found = conn.execute(
                    text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
                ).first()
                available = (
                    found
                    or conn.execute(
                        text("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")
                    ).first()
                )
        except Exception as exc:
            return Check("pgvector", "FAIL", f"cannot query extensions: {_reason(exc)}", "")
        if available is None:
            return Check(
                "pgvector", "warn", "the pgvector extension is not installed on this server",
                "install pgvector (e.g. the pgvector/pgvector image) for vector search",
            )  # fmt: skip
        return Check("pgvector", "ok", f"pgvector {available[0]} {'enabled' if found else 'available'}")

    # --- encryption -----------------------------------------------------------------------------

    def _encryption(self) -> Iterator[Check]:
        if not self.settings.encryption.envelope:
            return
        from liquid.bootstrap import master_keys
        from liquid.keyring import DataKeys

        try:
            masters = master_keys(self.settings)
        except LiquidError as exc:
            yield Check("encryption", "FAIL", _reason(exc), "fix encryption.master_keys(_file)")
            return
        assert masters is not None
        if self.engine is None:
            yield Check("encryption", "ok", f"master keys load ({masters!r}); data keys not checked")
            return
        try:
            wrapped_by = DataKeys(self.engine, masters).count_by_master()
        except Exception as exc:
            yield Check("encryption", "FAIL", f"cannot read tenant data keys: {_reason(exc)}", "")
            return
        missing = {m: n for m, n in wrapped_by.items() if m not in masters}
        if missing:
            yield Check(
                "encryption", "FAIL",
                "data keys wrapped by master keys not configured: "
                + ", ".join(f"{m} ({n} keys)" for m, n in sorted(missing.items())),
                "add those master keys back (objects under them are unreadable) or run "
                "`liquid encryption rotate-master` where they are still configured",
            )  # fmt: skip
            return
        yield Check(
            "encryption", "ok", f"{masters!r}; {sum(wrapped_by.values())} tenant data keys all unwrappable"
        )

    # --- stores --------------------------------------------------------------------------------

    def _stores(self) -> Iterator[Check]:
        names = {n for n in (self.settings.tiers.hot, self.settings.tiers.warm) if n}
        names |= {n for n in (self.settings.tiers.cold, self.settings.tiers.archive) if n}
        names |= set(self.settings.stores)
        for name in sorted(names):
            url = self.settings.stores.get(name)
            if name == CATALOG_STORE or url == CATALOG_STORE:
                url = self.settings.catalog_url
            if url is None:
                yield Check(
                    f"store:{name}", "warn", "no URL: Liquid would start an embedded one; not checked",
                    f"set LIQUID_STORES__{name.upper()} for a deployment",
                )  # fmt: skip
                continue
            yield self._probe(name, url)

    def _probe(self, name: str, url: str) -> Check:
        check = f"store:{name}"
        try:
            store: Store = open_store(url)
        except Exception as exc:
            return Check(check, "FAIL", f"cannot open {redact(url)}: {_reason(exc)}", "fix the store URL")
        where = store.url if hasattr(store, "url") else redact(url)
        locator = f"{PROBE_PREFIX}/{uuid.uuid4().hex}"
        payload = b"liquid doctor probe " + locator.encode()
        step = "reach"
        try:
            store.ping()
            step = "put"
            write_bytes(store, locator, payload)
            step = "read"
            back = read_bytes(store, locator)
            if back != payload:
                return Check(
                    check, "FAIL", f"read back other bytes than written in {where}", "check the store"
                )
            step = "delete"
            store.delete(locator)
        except Exception as exc:
            hint = {
                "reach": "check the endpoint, network and credentials",
                "put": "grant write permission (e.g. s3:PutObject) to Liquid's credentials",
                "read": "grant read permission (e.g. s3:GetObject) to Liquid's credentials",
                "delete": f"grant delete permission (e.g. s3:DeleteObject); remove {locator} by hand",
            }[step]
            return Check(check, "FAIL", f"{step} failed on {where}: {_reason(exc)}", hint)
        finally:
            store.close()
        return Check(check, "ok", f"put, read and delete a probe object in {where}")

    # --- policies ------------------------------------------------------------------------------

    def _policy_tiers(self) -> Iterator[Check]:
        if self.engine is None:
            return
        from liquid.policy.store import active_policies

        try:
            applied = active_policies(self.engine)
        except Exception as exc:
            yield Check("policy tiers", "FAIL", f"cannot read the applied policies: {_reason(exc)}", "")
            return
        if applied is None:
            yield Check(
                "policy tiers", "warn", "no policies applied", "apply some with `liquid policy apply`"
            )
            return
        missing = []
        for policy in applied.policies.tiering:
            for rule in policy.spec.rules:
                tier = rule.tier
                if self.settings.store_for(tier) is None or (tier == "hot" and not self.settings.hot.enabled):
                    missing.append(f"policy {policy.name!r} targets tier {tier}, which has no store")
        if missing:
            yield Check(
                "policy tiers", "FAIL", "; ".join(sorted(set(missing))),
                "configure the tier's store (tiers.<tier> and stores.<name>) or change the policy",
            )  # fmt: skip
        else:
            yield Check(
                "policy tiers",
                "ok",
                f"every tier the {len(applied.policies.tiering)} policies use has a store",
            )


def run_doctor(settings: Settings, *, clock: Callable[[], datetime] | None = None) -> list[Check]:
    """All checks for ``settings``, in order."""
    return list(Doctor(settings, clock=clock).run())
