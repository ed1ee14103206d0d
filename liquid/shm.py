"""Tier 1.5: same-node copies in shared memory, found through the ``ipc`` hint on a ref.

When the API writes (or reads) an Arrow object — content type
``application/vnd.apache.arrow.stream`` or ``.file`` by default — it keeps a copy of
its exact bytes as a file under ``/dev/shm/liquid-<uid>`` (``shm.dir``; a temporary
directory where ``/dev/shm`` is absent) and puts an :class:`~liquid.refs.IpcHint` on
the ref it returns: node id, absolute path, expiry and the SHA-256 of the file. A
consumer on the same node memory-maps the file and reads the table zero-copy; the
bytes are an Arrow IPC stream (or file) exactly as stored, so the checksum is the
object's own.

The tier is best effort and never trusted blindly. A reader (:class:`ShmReader`)
falls back to the durable ref — silently, counting why — when the hint is for
another node, has expired, names a path outside the directories it trusts, or the
file is missing (evicted), has the wrong size or fails its checksum (corrupted; the
file is then removed). Checking SHA-256 costs about as much as copying, so by
default (``shm.verify: once``) a process checks a file the first time it maps it
and again whenever the file's identity (device, inode, size, mtime) changes; an
in-place overwrite changes the mtime. ``verify: always`` checks on every read.

:class:`ShmCache` (the writer side) keeps the directory under ``shm.max_bytes`` and
copies no older than ``shm.ttl``: :meth:`ShmCache.sweep` removes expired copies and
then the oldest until the total fits; the API runs it every ``shm.sweep_interval``
and after each new copy. Files are created ``0600`` in a ``0700`` directory, so only
processes of the same OS user can map them; others fall back to the durable path.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import stat
import tempfile
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from liquid.errors import ConfigError
from liquid.refs import IpcHint, ResultRef

if TYPE_CHECKING:
    import pyarrow as pa  # type: ignore[import-untyped]

    from liquid.config import ShmSettings

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
SUFFIX = ".arrow"
_TMP_PREFIX = ".tmp-"
_NAME = re.compile(r"^[0-9a-f]{32}-[0-9a-f]{16}\.arrow$")
ARROW_FILE_MAGIC = b"ARROW1"


def utcnow() -> datetime:
    return datetime.now(UTC)


def default_shm_dir() -> Path:
    """``/dev/shm/liquid-<uid>``, or ``<tmp>/liquid-shm-<uid>`` where ``/dev/shm`` is absent."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK):
        return shm / f"liquid-{uid}"
    return Path(tempfile.gettempdir()) / f"liquid-shm-{uid}"


def file_name(ref: ResultRef, sha256: str) -> str:
    """The copy's file name: a digest of the ref plus the object's checksum prefix."""
    return f"{hashlib.sha256(ref.uri.encode()).hexdigest()[:32]}-{sha256[:16]}{SUFFIX}"


@dataclass(frozen=True, slots=True)
class SweepReport:
    expired: int
    evicted: int
    files: int
    bytes: int


class ShmWriter:
    """One copy being written; :meth:`commit` publishes it, :meth:`abort` drops it.

    Writes past the cache's ``max_bytes`` quietly abort the copy (the durable write goes on).
    """

    def __init__(self, cache: ShmCache) -> None:
        self.cache = cache
        self.size = 0
        self.digest = hashlib.sha256()
        self.tmp = cache.directory / f"{_TMP_PREFIX}{uuid.uuid4().hex}"
        self._fd: int | None = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)

    @property
    def active(self) -> bool:
        return self._fd is not None

    def write(self, chunk: bytes | memoryview) -> None:
        if self._fd is None:
            return
        self.size += len(chunk)
        if self.size > self.cache.max_bytes:
            self.abort()
            return
        self.digest.update(chunk)
        view = memoryview(chunk)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    def commit(self, ref: ResultRef, sha256: str) -> IpcHint | None:
        """Publish the copy for ``ref``; None if it was aborted or does not match ``sha256``."""
        if self._fd is None:
            return None
        os.close(self._fd)
        self._fd = None
        if self.digest.hexdigest() != sha256:
            self._unlink()
            return None
        return self.cache._publish(self.tmp, ref, sha256, self.size)

    def abort(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._unlink()

    def _unlink(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()


def private_dir(path: Path) -> Path:
    """``path`` as a directory only this user can enter: created 0700, or tightened to 0700.

    Copies in it are other tenants' bytes, readable by anyone who can list the directory, so a
    pre-existing one (``/dev/shm`` is world-writable) is tightened if it is ours and refused if
    it is a symlink or another user's: that user could read or plant copies.

    Raises:
        ConfigError: the path is not a directory, is a symlink, or belongs to another user.
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise ConfigError(
            f"shm.dir {str(path)!r} is not a plain directory (a symlink?); choose another", field="shm.dir"
        )
    if st.st_uid != os.geteuid():
        raise ConfigError(
            f"shm.dir {str(path)!r} belongs to uid {st.st_uid}, not to this process (uid {os.geteuid()});"
            " remove it or choose another shm.dir",
            field="shm.dir",
        )
    if stat.S_IMODE(st.st_mode) & 0o077:
        log.warning("shm.dir %s had mode %o; tightened to 700", path, stat.S_IMODE(st.st_mode))
        os.chmod(path, 0o700, follow_symlinks=False)
    return path


class ShmCache:
    """The writer side: copies under one directory, with a size cap and a TTL.

    Args:
        directory: where copies live (created ``0700``).
        node_id: this node's name, written into every hint.
        max_bytes: total size the sweeper keeps the directory under.
        ttl: seconds a copy (and its hint) lives.
        clock: returns the current UTC time; tests inject a fake one.
    """

    def __init__(
        self,
        directory: Path | str,
        *,
        node_id: str,
        max_bytes: int,
        ttl: float,
        min_size: int = 0,
        content_types: Sequence[str] = (),
        clock: Clock = utcnow,
    ) -> None:
        self.directory = private_dir(Path(directory).absolute())
        self.node_id = node_id
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.min_size = min_size
        self.content_types = frozenset(content_types)
        self.clock = clock
        self._lock = threading.Lock()
        self.published = 0
        self.evicted = 0
        self.expired = 0

    @classmethod
    def from_settings(cls, settings: ShmSettings, *, node_id: str, clock: Clock = utcnow) -> ShmCache:
        return cls(
            settings.dir or default_shm_dir(),
            node_id=node_id,
            max_bytes=settings.max_bytes,
            ttl=settings.ttl,
            min_size=settings.min_size,
            content_types=settings.content_types,
            clock=clock,
        )

    def __repr__(self) -> str:
        return (
            f"ShmCache({str(self.directory)!r}, node={self.node_id!r}, max_bytes={self.max_bytes}, "
            f"published={self.published}, evicted={self.evicted}, expired={self.expired})"
        )

    def wants(self, content_type: str, size: int | None) -> bool:
        """Whether an object of this type and size (None: not known yet) should get a copy."""
        base = content_type.split(";", 1)[0].strip().lower()
        if base not in self.content_types:
            return False
        return size is None or self.min_size <= size <= self.max_bytes

    def writer(self) -> ShmWriter:
        return ShmWriter(self)

    def put(self, ref: ResultRef, chunks: Iterable[bytes], *, sha256: str) -> IpcHint | None:
        """Keep a copy of the given bytes; None when it does not fit or does not match ``sha256``."""
        w = self.writer()
        try:
            for chunk in chunks:
                w.write(chunk)
                if not w.active:
                    return None
            return w.commit(ref, sha256)
        except BaseException:
            w.abort()
            raise

    def hint(self, ref: ResultRef, sha256: str) -> IpcHint | None:
        """The hint for an existing, unexpired copy of ``ref``, or None."""
        path = self.directory / file_name(ref, sha256)
        try:
            st = path.stat()
        except OSError:
            return None
        expires = datetime.fromtimestamp(st.st_mtime, UTC) + timedelta(seconds=self.ttl)
        if expires <= self.clock():
            return None
        return IpcHint(node=self.node_id, path=str(path), expires_at=expires, checksum=sha256)

    def delete(self, ref: ResultRef, sha256: str) -> bool:
        try:
            (self.directory / file_name(ref, sha256)).unlink()
        except FileNotFoundError:
            return False
        return True

    def sweep(self) -> SweepReport:
        """Remove expired copies (and stale temp files), then the oldest until under ``max_bytes``."""
        with self._lock:
            now = self.clock().timestamp()
            live: list[tuple[float, int, Path]] = []
            expired = evicted = 0
            try:
                entries = list(os.scandir(self.directory))
            except FileNotFoundError:
                private_dir(self.directory)
                entries = []
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if st.st_mtime + self.ttl <= now and (
                    entry.name.endswith(SUFFIX) or entry.name.startswith(_TMP_PREFIX)
                ):
                    expired += _unlink(entry.path)
                elif entry.name.endswith(SUFFIX):
                    live.append((st.st_mtime, st.st_size, Path(entry.path)))
            total = sum(size for _, size, _ in live)
            live.sort()
            for _, size, path in live:
                if total <= self.max_bytes:
                    break
                evicted += _unlink(str(path))
                total -= size
            self.expired += expired
            self.evicted += evicted
            return SweepReport(expired=expired, evicted=evicted, files=len(live) - evicted, bytes=total)

    def _publish(self, tmp: Path, ref: ResultRef, sha256: str, size: int) -> IpcHint | None:
        final = self.directory / file_name(ref, sha256)
        now = self.clock()
        ts = now.timestamp()
        # mtime is the copy's birth on the injected clock: the sweeper and hint() both read it.
        os.utime(tmp, (ts, ts))
        os.replace(tmp, final)
        self.published += 1
        self.sweep()
        if not final.exists():  # evicted at once: larger than what the cap leaves
            return None
        return IpcHint(
            node=self.node_id,
            path=str(final),
            expires_at=now + timedelta(seconds=self.ttl),
            checksum=sha256,
        )


def _unlink(path: str) -> int:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return 0
    return 1


class ShmReader:
    """The consumer side: maps a hinted copy if it is this node's, fresh and intact, else None.

    Args:
        node_id: this node's name; hints for any other node are ignored.
        dirs: directories whose files may be mapped; a hint pointing elsewhere is ignored.
        verify: ``once`` (per file identity per process) or ``always``.
        clock: returns the current UTC time.
    """

    def __init__(
        self,
        *,
        node_id: str,
        dirs: Sequence[Path | str] = (),
        verify: str = "once",
        clock: Clock = utcnow,
        max_verified: int = 1024,
    ) -> None:
        self.node_id = node_id
        self.dirs = tuple(Path(d).absolute() for d in (dirs or (default_shm_dir(),)))
        self.verify = verify
        self.clock = clock
        self._verified: OrderedDict[tuple[int, int, int, int], str] = OrderedDict()
        self._max_verified = max_verified
        self._lock = threading.Lock()
        #: Why reads did not come from shared memory, by reason.
        self.fallbacks: dict[str, int] = {}
        self.hits = 0

    def __repr__(self) -> str:
        return f"ShmReader(node={self.node_id!r}, hits={self.hits}, fallbacks={self.fallbacks})"

    def _miss(self, reason: str) -> None:
        with self._lock:
            self.fallbacks[reason] = self.fallbacks.get(reason, 0) + 1

    def open_buffer(self, hint: IpcHint, *, sha256: str, size: int) -> pa.Buffer | None:
        """A zero-copy buffer over the hinted file, or None (the reason is counted in ``fallbacks``)."""
        import pyarrow as pa  # imported on use: a process that never maps shm never loads Arrow

        if hint.node != self.node_id:
            self._miss("foreign-node")
            return None
        if hint.expires_at <= self.clock():
            self._miss("expired")
            return None
        if hint.checksum is not None and hint.checksum != sha256:
            self._miss("checksum-mismatch")
            return None
        path = Path(hint.path)
        if (
            not path.is_absolute()
            or path.parent not in self.dirs
            or not _NAME.match(path.name)
            or not path.name.endswith(f"-{sha256[:16]}{SUFFIX}")
        ):
            self._miss("untrusted-path")
            return None
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            self._miss("missing")
            return None
        try:
            st = os.fstat(fd)
            if st.st_size != size:
                self._drop(path, "corrupt")
                return None
            if size == 0:
                buf = pa.py_buffer(b"")
            else:
                # pa.memory_map takes a path; map the descriptor's file via /proc when we can to avoid a race.
                proc = f"/proc/self/fd/{fd}"
                buf = pa.memory_map(proc if os.path.exists(proc) else str(path), "r").read_buffer()
        except OSError:
            self._miss("missing")
            return None
        finally:
            os.close(fd)
        identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if self.verify == "always" or self._verified.get(identity) != sha256:
            if hashlib.sha256(memoryview(buf)).hexdigest() != sha256:
                self._drop(path, "corrupt")
                return None
            with self._lock:
                self._verified[identity] = sha256
                while len(self._verified) > self._max_verified:
                    self._verified.popitem(last=False)
        with self._lock:
            self.hits += 1
        return buf

    def read_table(self, hint: IpcHint, *, sha256: str, size: int) -> pa.Table | None:
        """The Arrow table in the hinted file, zero-copy, or None."""
        import pyarrow as pa  # imported on use: a process that never maps shm never loads Arrow

        buf = self.open_buffer(hint, sha256=sha256, size=size)
        if buf is None:
            return None
        try:
            return read_ipc(buf)
        except pa.ArrowInvalid:
            self._miss("not-arrow")
            return None

    def _drop(self, path: Path, reason: str) -> None:
        log.warning("shared-memory copy %s failed its check (%s); using the durable ref", path, reason)
        self._miss(reason)
        with contextlib.suppress(OSError):
            path.unlink()


def read_ipc(buf: pa.Buffer) -> pa.Table:
    """An Arrow table from IPC stream or file bytes (zero-copy over ``buf``)."""
    import pyarrow as pa  # imported on use: a process that never maps shm never loads Arrow

    if buf.size >= 6 and buf.slice(0, 6).to_pybytes() == ARROW_FILE_MAGIC:
        return pa.ipc.open_file(buf).read_all()
    return pa.ipc.open_stream(buf).read_all()
