"""Catalog connections and schema migrations."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine

MIGRATIONS = Path(__file__).with_name("migrations")


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    """An engine for the catalog URL (``postgresql://`` is read as psycopg 3)."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    # No pre-ping: it costs a round trip per checkout; recycled connections and the callers' own
    # error handling cover a server restart.
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800)


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the catalog schema to ``revision`` (idempotent); serialised by an advisory lock."""
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        # Several processes (API workers, daemons) may start at once; one migrates, the rest wait.
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7394211)")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        rev: str | None = MigrationContext.configure(conn).get_current_revision()
        return rev


def head_revision() -> str | None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()
