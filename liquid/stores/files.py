"""FileStore: objects as files under one local directory (``file:///abs/dir``).

Each locator is a file path below the root. Writes go to a temporary file in the
target's own directory, are fsynced, then ``os.replace``d over the target, so a
reader sees the old file or the new one and a crash leaves at most a stray temp
file (named with :data:`TEMP_PREFIX`, which :meth:`FileStore.list` skips).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote

from liquid.errors import Conflict, InvalidInput, ObjectNotFound, StoreError
from liquid.stores._common import Options
from liquid.stores.base import CHUNK_SIZE, ObjectStat, check_locator, check_range

#: Temporary files start with this; locators whose segments do too are refused.
TEMP_PREFIX = ".liquid-tmp-"


class FileStore:
    """A directory of files. ``file:///var/lib/liquid/cold`` or ``FileStore(Path(...))``."""

    def __init__(self, root: str | Path, *, fsync: bool = True, create: bool = True) -> None:
        """Args:
        root: the directory (a ``file://`` URL or a path); created when ``create``.
        fsync: fsync files and directories on write (turn off only for throwaway data).
        """
        if isinstance(root, str) and root.startswith("file:"):
            opts = Options(root, "file")
            if opts.parts.netloc not in ("", "localhost"):
                raise InvalidInput(
                    f"file store URL {root!r} must be file:///absolute/path (got host {opts.parts.netloc!r})",
                    field="url",
                )
            fsync = opts.flag("fsync", fsync)
            create = opts.flag("create", create)
            opts.finish()
            root = unquote(opts.parts.path)
        path = Path(root)
        if not path.is_absolute():
            raise InvalidInput(f"file store root must be an absolute path, got {str(root)!r}", field="url")
        if create:
            path.mkdir(parents=True, exist_ok=True)
        elif not path.is_dir():
            raise StoreError(f"file store root {str(path)!r} is not a directory")
        self.root = path.resolve()
        self.fsync = fsync
        self.url = self.root.as_uri()

    def __repr__(self) -> str:
        return f"FileStore({str(self.root)!r})"

    def _path(self, locator: str) -> Path:
        """The file of ``locator``, refusing anything that would land outside the root."""
        check_locator(locator)
        if any(seg.startswith(TEMP_PREFIX) for seg in locator.split("/")):
            raise InvalidInput(
                f"locator {locator!r} uses the reserved prefix {TEMP_PREFIX!r}", field="locator"
            )
        path = self.root / locator
        # resolve() follows symlinks: a link inside the root pointing outside is caught here.
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root) or resolved == self.root:
            raise InvalidInput(
                f"locator {locator!r} resolves outside the store root {self.url}", field="locator"
            )
        return resolved

    def put(self, locator: str, chunks: Iterable[bytes], *, size_hint: int | None = None) -> int:
        """Write to a temp file beside the target, fsync, then rename it over the target."""
        path = self._path(locator)
        for attempt in range(5):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = self._temp_file(path.parent)
                break
            except FileNotFoundError:
                # A concurrent delete pruned the empty parent between mkdir and open: retry.
                if attempt == 4:
                    raise
            except (NotADirectoryError, FileExistsError) as exc:
                raise Conflict(
                    f"locator {locator!r} needs a directory where {self.url} has an object", field="locator"
                ) from exc
        written = 0
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    f.write(chunk)
                    written += len(chunk)
                if self.fsync:
                    f.flush()
                    os.fsync(f.fileno())
            try:
                os.replace(tmp, path)
            except IsADirectoryError as exc:
                raise Conflict(
                    f"locator {locator!r} is a directory of other objects in {self.url}", field="locator"
                ) from exc
            if self.fsync:
                self._fsync_dir(path.parent)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return written

    def _temp_file(self, directory: Path) -> tuple[int, str]:
        tmp = str(directory / f"{TEMP_PREFIX}{uuid.uuid4().hex}")
        return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), tmp

    @staticmethod
    def _fsync_dir(directory: Path) -> None:
        # The rename is only durable once the directory entry is on disk.
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def open(self, locator: str, *, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Open eagerly (so a missing file raises now), then stream the window."""
        check_range(start, end)
        path = self._path(locator)
        try:
            f = path.open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFound(f"no object {locator!r} in {self.url}") from None
        return self._stream(f, start, end)

    @staticmethod
    def _stream(f: BinaryIO, start: int, end: int | None) -> Iterator[bytes]:
        with f:
            f.seek(start)
            remaining = None if end is None else end - start
            while remaining is None or remaining > 0:
                want = CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining)
                chunk = f.read(want)
                if not chunk:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk

    def head(self, locator: str) -> ObjectStat:
        """Size and mtime of the file."""
        path = self._path(locator)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(f"no object {locator!r} in {self.url}") from None
        if not path.is_file():
            raise ObjectNotFound(f"no object {locator!r} in {self.url}")
        return ObjectStat(locator, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def delete(self, locator: str) -> bool:
        """Unlink the file and prune directories it leaves empty."""
        path = self._path(locator)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return False
        parent = path.parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                break  # not empty (or raced with a put): stop pruning
            parent = parent.parent
        return True

    def list(self, prefix: str = "") -> Iterator[ObjectStat]:
        """Walk the tree in sorted order, descending only into directories the prefix can match."""
        if prefix:
            # A prefix need not be a valid locator ("a/" or "a/b-"), but it must not escape.
            check_locator(prefix.rstrip("/") or "x")
        return self._walk(self.root, "", prefix)

    def _walk(self, directory: Path, rel: str, prefix: str) -> Iterator[ObjectStat]:
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except FileNotFoundError:
            return
        # Sorting by name with "/" appended to directories makes the walk yield locators in
        # plain string order ("a-b" < "a/c"), the order every other backend uses.
        keyed = []
        for entry in entries:
            if entry.name.startswith(TEMP_PREFIX):
                continue
            is_dir = entry.is_dir(follow_symlinks=False)
            keyed.append((entry.name + ("/" if is_dir else ""), entry, is_dir))
        keyed.sort(key=lambda t: t[0])
        for _, entry, is_dir in keyed:
            name = rel + entry.name
            if is_dir:
                sub = name + "/"
                if sub.startswith(prefix) or prefix.startswith(sub):
                    yield from self._walk(Path(entry.path), sub, prefix)
            elif name.startswith(prefix) and entry.is_file(follow_symlinks=False):
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # deleted while we walked
                yield ObjectStat(name, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def ping(self) -> None:
        """Check the root is a writable directory."""
        if not self.root.is_dir() or not os.access(self.root, os.W_OK | os.X_OK):
            raise StoreError(f"file store {self.url} is not a writable directory")

    def close(self) -> None:
        """Nothing to release."""
