"""MinioStore: cold storage through the MinIO SDK (MinIO or any S3-compatible server).

URL: ``minio://bucket/prefix?endpoint=127.0.0.1:9000&secure=false&region=us-east-1&part_size=8MiB``

Credentials, first found wins: ``access_key``/``secret_key`` in the URL, then
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, then ``MINIO_ACCESS_KEY``/
``MINIO_SECRET_KEY``. They never appear in :attr:`MinioStore.url`.

Puts stream with ``length=-1``: the SDK reads one ``part_size`` part at a time and
switches to a multipart upload (aborted on failure) when there is more than one.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO, cast

from liquid.errors import InvalidInput, ObjectNotFound, StoreError
from liquid.stores._common import Options, key_prefix, missing, public_url
from liquid.stores.base import CHUNK_SIZE, ObjectStat, check_locator, check_range

try:
    import urllib3
    from minio import Minio
    from minio.error import MinioException, S3Error
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise missing("minio", "minio") from exc

MIN_PART_SIZE = 5 * 1024 * 1024
DEFAULT_PART_SIZE = 8 * 1024 * 1024
_NOT_FOUND = frozenset({"NoSuchKey", "NoSuchObject", "ResourceNotFound"})


class _IterReader(io.RawIOBase):
    """A read-only file over an iterator of chunks, counting what was read."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it = iter(chunks)
        self._buf = b""
        self.count = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        # Gather pieces and join once: appending to one bytes object would be quadratic.
        pieces = [self._buf] if self._buf else []
        have = len(self._buf)
        while size is None or size < 0 or have < size:
            try:
                chunk = next(self._it)
            except StopIteration:
                break
            pieces.append(chunk)
            have += len(chunk)
        data = b"".join(pieces)
        if size is None or size < 0 or len(data) <= size:
            out, self._buf = data, b""
        else:
            out, self._buf = data[:size], data[size:]
        self.count += len(out)
        return out

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


class MinioStore:
    """Objects under ``prefix`` in one bucket, through the ``minio`` SDK."""

    def __init__(self, url: str, *, client: Minio | None = None) -> None:
        """Args:
        url: ``minio://bucket/prefix?endpoint=host:port&secure=false&region=...``.
        client: a ready ``Minio`` client to use instead of building one.
        """
        opts = Options(url, "minio")
        if opts.parts.scheme != "minio" or not opts.parts.netloc:
            raise InvalidInput(
                f"MinIO store URL must look like minio://bucket/prefix, got {url.split('?')[0]!r}"
            )
        self.bucket = opts.parts.netloc
        self.prefix = key_prefix(opts.parts.path)
        endpoint = opts.text("endpoint")
        if not endpoint:
            raise InvalidInput("MinIO store URL needs endpoint=host:port", field="url")
        self.endpoint = endpoint.removeprefix("http://").removeprefix("https://").rstrip("/")
        self.secure = opts.flag("secure", not endpoint.startswith("http://"))
        self.region = opts.text("region")
        self.part_size = opts.size("part_size", DEFAULT_PART_SIZE)
        if self.part_size < MIN_PART_SIZE:
            raise InvalidInput(f"MinIO part_size must be at least 5MiB, got {self.part_size}", field="url")
        access_key = (
            opts.text("access_key")
            or os.environ.get("AWS_ACCESS_KEY_ID")
            or os.environ.get("MINIO_ACCESS_KEY")
        )
        secret_key = (
            opts.text("secret_key")
            or os.environ.get("AWS_SECRET_ACCESS_KEY")
            or os.environ.get("MINIO_SECRET_KEY")
        )
        timeout = opts.number("timeout", 30) or 30
        self.list_order = opts.text("list_order", "sort")
        if self.list_order not in ("sort", "server"):
            raise InvalidInput(
                f"MinIO list_order must be 'sort' or 'server', got {self.list_order!r}", field="url"
            )
        opts.finish()
        self.url = public_url(
            f"minio://{self.bucket}/{self.prefix}",
            {"endpoint": self.endpoint, "secure": str(self.secure).lower(), "region": self.region or ""},
        )
        if client is None:
            # The SDK's default pool retries 5 times with backoff; a dead endpoint should fail fast.
            http = urllib3.PoolManager(
                timeout=urllib3.Timeout(connect=min(timeout, 10), read=timeout),
                retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
                maxsize=16,
            )
            client = Minio(
                self.endpoint,
                access_key=access_key,
                secret_key=secret_key,
                secure=self.secure,
                region=self.region,
                http_client=http,
            )
        self.client = client

    def __repr__(self) -> str:
        return f"MinioStore({self.url!r})"

    def _key(self, locator: str) -> str:
        return self.prefix + check_locator(locator)

    @contextmanager
    def _errors(self, what: str, locator: str | None = None) -> Iterator[None]:
        try:
            yield
        except S3Error as exc:
            if locator is not None and exc.code in _NOT_FOUND:
                raise ObjectNotFound(f"no object {locator!r} in {self.url}") from None
            raise StoreError(f"MinIO store {self.url}: {what} failed: {exc.code}: {exc.message}") from exc
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            if isinstance(exc, ObjectNotFound | StoreError):
                raise
            raise StoreError(f"MinIO store {self.url}: {what} failed: {exc}") from exc

    def put(self, locator: str, chunks: Iterable[bytes], *, size_hint: int | None = None) -> int:
        """Stream with ``length=-1``; the SDK buffers one part and aborts multipart on failure."""
        key = self._key(locator)
        reader = _IterReader(chunks)
        with self._errors(f"put {locator!r}"):
            # One upload thread: parallel uploads would hold several parts in memory at once.
            self.client.put_object(
                self.bucket,
                key,
                cast(BinaryIO, reader),
                length=-1,
                part_size=self.part_size,
                num_parallel_uploads=1,
            )
        return reader.count

    def open(self, locator: str, *, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """GET the window now (missing → ObjectNotFound), stream it lazily."""
        check_range(start, end)
        key = self._key(locator)
        if end is not None and end == start:
            self.head(locator)
            return iter(())
        length = 0 if end is None else end - start
        try:
            with self._errors(f"open {locator!r}", locator):
                resp = self.client.get_object(self.bucket, key, offset=start, length=length)
        except StoreError as exc:
            cause = exc.__cause__
            if isinstance(cause, S3Error) and cause.code == "InvalidRange":
                return iter(())  # 416: exists, but `start` is at or past the end
            raise
        return self._stream(locator, resp)

    def _stream(self, locator: str, resp: Any) -> Iterator[bytes]:
        try:
            with self._errors(f"read {locator!r}"):
                yield from resp.stream(CHUNK_SIZE)
        finally:
            resp.close()
            resp.release_conn()

    def head(self, locator: str) -> ObjectStat:
        """stat_object."""
        key = self._key(locator)
        with self._errors(f"head {locator!r}", locator):
            obj = self.client.stat_object(self.bucket, key)
        return ObjectStat(locator, int(obj.size or 0), obj.last_modified)

    def delete(self, locator: str) -> bool:
        """stat then remove: S3 deletes do not report whether the key existed."""
        try:
            self.head(locator)
        except ObjectNotFound:
            return False
        with self._errors(f"delete {locator!r}"):
            self.client.remove_object(self.bucket, self._key(locator))
        return True

    def list(self, prefix: str = "") -> Iterator[ObjectStat]:
        """Stats under ``prefix`` in ascending order.

        AWS S3 lists keys in UTF-8 byte order, but S3-compatible servers that store keys as a
        directory tree (SeaweedFS) list ``a/1`` before ``a-b``. So by default the listing is
        collected and sorted (memory grows with the number of keys, not their sizes);
        ``list_order=server`` streams the server's order for services known to sort.
        """
        if self.list_order == "server":
            return self._list(prefix)
        return iter(sorted(self._list(prefix), key=lambda s: s.locator))

    def _list(self, prefix: str) -> Iterator[ObjectStat]:
        with self._errors(f"list {prefix!r}"):
            for obj in self.client.list_objects(self.bucket, prefix=self.prefix + prefix, recursive=True):
                name = (obj.object_name or "")[len(self.prefix) :]
                if name and not name.endswith("/") and not obj.is_dir:
                    yield ObjectStat(name, int(obj.size or 0), obj.last_modified)

    def ping(self) -> None:
        """Check the bucket exists (which also checks endpoint and credentials)."""
        with self._errors("ping"):
            if not self.client.bucket_exists(self.bucket):
                raise StoreError(f"MinIO store {self.url}: bucket {self.bucket!r} does not exist")

    def close(self) -> None:
        """Drop the connection pool."""
        http = getattr(self.client, "_http", None)
        if http is not None:
            http.clear()
