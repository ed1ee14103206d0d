"""Event sinks: where the exporter writes. One protocol, one module-level class per transport.

Both transports run the same SQL (:mod:`liquid.events.clickhouse`): the DDL, the stats
queries and the insert of an Arrow batch with a deduplication token. Only how the bytes
travel differs:

* :class:`ChDBSink` — embedded ClickHouse (chDB) on a local path, the default for
  ``liquid up`` and the tests. chDB allows **one process per path**: the process that
  opens it (the daemon's exporter, or ``liquid export clickhouse``) owns it.
* :class:`ClickHouseHTTPSink` — a ClickHouse server through ``clickhouse-connect``.

:func:`open_sink` picks one by URL: ``chdb:///abs/path`` (or ``chdb://relative/path``),
``clickhouse://user:pass@host:8123/db`` or ``clickhouses://`` (TLS).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import pyarrow as pa  # type: ignore[import-untyped]

from liquid.errors import InvalidInput, MissingDependency
from liquid.events.clickhouse import MIGRATIONS_TABLE, check_database, migration_statements


class SinkUnavailable(Exception):
    """The sink could not be reached or refused a write; the exporter retries later."""


class EventSink(Protocol):
    """A ClickHouse to export into."""

    #: Names the sink in ``event_exports`` (its watermark row) and in insert tokens.
    name: str
    database: str

    def execute(self, sql: str) -> None:
        """Run a statement that returns nothing (DDL)."""
        ...

    def query(self, sql: str) -> pa.Table:
        """Run a query; its result as an Arrow table."""
        ...

    def insert_events(self, batch: pa.Table, *, token: str) -> None:
        """Insert rows into ``events``; a second insert with the same ``token`` is dropped."""
        ...

    def close(self) -> None: ...


def migrate(sink: EventSink) -> list[int]:
    """Apply the ClickHouse migrations not applied yet; returns their versions."""
    db = sink.database
    sink.execute(f"CREATE DATABASE IF NOT EXISTS {db}")
    sink.execute(MIGRATIONS_TABLE.format(db=db))
    applied = {
        int(v) for v in sink.query(f"SELECT version FROM {db}.schema_migrations").column(0).to_pylist()
    }
    done = []
    for version, statements in migration_statements(db, applied):
        for statement in statements:
            sink.execute(statement)
        sink.execute(f"INSERT INTO {db}.schema_migrations (version) VALUES ({int(version)})")
        done.append(version)
    return done


class ChDBSink:
    """Embedded ClickHouse on ``path`` (one process per path: this one owns it)."""

    def __init__(self, path: str | Path, *, database: str = "liquid") -> None:
        try:
            from chdb import session
        except ImportError as exc:
            raise MissingDependency("chdb is not installed: pip install 'liquid-data[clickhouse]'") from exc
        self.path = Path(path)
        self.database = check_database(database)
        self.name = f"chdb:{self.path.resolve()}"
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            self._session: Any = session.Session(str(self.path))  # type: ignore[no-untyped-call]
        except Exception as exc:
            raise SinkUnavailable(
                f"cannot open chDB at {self.path} (another process holds it? one process per path): {exc}"
            ) from exc
        # A session is not safe to share between threads (API workers, daemon jobs).
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ChDBSink({str(self.path)!r})"

    def execute(self, sql: str) -> None:
        with self._lock:
            self._session.query(sql)

    def query(self, sql: str) -> pa.Table:
        with self._lock:
            result = self._session.query(sql, "ArrowTable")
        if isinstance(result, pa.Table):
            return result
        return pa.table({})

    def insert_events(self, batch: pa.Table, *, token: str) -> None:
        # chDB's Python() table function reads the Arrow table named in the query from this frame.
        events_batch = batch  # noqa: F841
        sql = (
            f"INSERT INTO {self.database}.events"
            f" SETTINGS insert_deduplicate = 1, deduplicate_blocks_in_dependent_materialized_views = 1,"
            f" insert_deduplication_token = '{_token(token)}'"
            " SELECT * FROM Python(events_batch)"
        )
        with self._lock:
            self._session.query(sql)

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None


class ClickHouseHTTPSink:
    """A ClickHouse server through clickhouse-connect (HTTP)."""

    def __init__(self, url: str) -> None:
        try:
            import clickhouse_connect
        except ImportError as exc:
            raise MissingDependency(
                "clickhouse-connect is not installed: pip install 'liquid-data[clickhouse]'"
            ) from exc
        parts = urlsplit(url)
        self.database = check_database(parts.path.strip("/") or "liquid")
        self.name = f"clickhouse://{parts.hostname}:{parts.port or 8123}/{self.database}"
        try:
            self._client: Any = clickhouse_connect.get_client(
                host=parts.hostname or "127.0.0.1",
                port=parts.port or (8443 if parts.scheme == "clickhouses" else 8123),
                username=parts.username or "default",
                password=parts.password or "",
                secure=parts.scheme == "clickhouses",
            )
        except Exception as exc:
            raise SinkUnavailable(f"cannot reach ClickHouse at {self.name}: {exc}") from exc

    def __repr__(self) -> str:
        return f"ClickHouseHTTPSink({self.name!r})"

    def execute(self, sql: str) -> None:
        self._client.command(sql)

    def query(self, sql: str) -> pa.Table:
        result: pa.Table = self._client.query_arrow(sql)
        return result

    def insert_events(self, batch: pa.Table, *, token: str) -> None:
        self._client.insert_arrow(
            f"{self.database}.events",
            batch,
            settings={
                "insert_deduplicate": 1,
                "deduplicate_blocks_in_dependent_materialized_views": 1,
                "insert_deduplication_token": _token(token),
            },
        )

    def close(self) -> None:
        self._client.close()


def _token(token: str) -> str:
    if "'" in token or "\\" in token:
        raise ValueError(f"an insert token has no quotes or backslashes, got {token!r}")
    return token


def open_sink(url: str) -> EventSink:
    """A sink for ``url``: ``chdb:///path``, ``chdb://relative/path``, ``clickhouse[s]://host:port/db``."""
    scheme, _, rest = url.partition("://")
    if scheme == "chdb":
        if not rest:
            raise InvalidInput(f"chdb URL needs a path, e.g. chdb:///var/lib/liquid/events; got {url!r}")
        return ChDBSink(rest)
    if scheme in ("clickhouse", "clickhouses"):
        return ClickHouseHTTPSink(url)
    raise InvalidInput(
        f"unknown event sink {url!r}: use chdb:///path or clickhouse://host:8123/db", field="events.sink"
    )
