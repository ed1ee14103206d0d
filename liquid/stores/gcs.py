"""GCSStore: cold storage on Google Cloud Storage (or its emulator).

URL: ``gs://bucket/prefix?project=p&endpoint=http://127.0.0.1:9023&chunk_size=8MiB``

Without ``endpoint`` the client uses Application Default Credentials; with one
(an emulator or a private gateway) it connects anonymously.

Objects up to ``chunk_size`` go up in one request; larger ones stream through a
resumable upload in ``chunk_size`` pieces. GCS publishes an object only when its
upload finalises, so a put is atomic. Reads pin the generation seen at open, so an
object replaced mid-read fails loudly instead of mixing versions.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from liquid.errors import InvalidInput, ObjectNotFound, StoreError
from liquid.stores._common import Options, key_prefix, lone_chunk, missing, public_url
from liquid.stores.base import CHUNK_SIZE, ObjectStat, check_locator, check_range

try:
    import requests
    from google.api_core import exceptions as gexc
    from google.api_core.retry import Retry
    from google.auth.credentials import AnonymousCredentials
    from google.auth.exceptions import GoogleAuthError
    from google.cloud import storage
    from google.cloud.storage.retry import DEFAULT_RETRY
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise missing("google-cloud-storage", "gcs") from exc

#: GCS requires resumable chunks in multiples of 256 KiB.
CHUNK_GRANULARITY = 256 * 1024
DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024


class GCSStore:
    """Objects under ``prefix`` in one GCS bucket."""

    def __init__(self, url: str, *, client: storage.Client | None = None) -> None:
        """Args:
        url: ``gs://bucket/prefix?project=...&endpoint=...&chunk_size=...&timeout=...``.
        client: a ready ``google.cloud.storage.Client`` to use instead of building one.
        """
        opts = Options(url, "gs")
        if opts.parts.scheme not in ("gs", "gcs") or not opts.parts.netloc:
            raise InvalidInput(f"GCS store URL must look like gs://bucket/prefix, got {url.split('?')[0]!r}")
        self.bucket_name = opts.parts.netloc
        self.prefix = key_prefix(opts.parts.path)
        self.endpoint = opts.text("endpoint")
        self.project = opts.text("project")
        self.chunk_size = opts.size("chunk_size", DEFAULT_CHUNK_SIZE)
        if self.chunk_size <= 0 or self.chunk_size % CHUNK_GRANULARITY:
            raise InvalidInput(f"GCS chunk_size must be a positive multiple of 256KiB, got {self.chunk_size}")
        self.timeout = float(opts.number("timeout", 60) or 60)
        opts.finish()
        self.url = public_url(
            f"gs://{self.bucket_name}/{self.prefix}",
            {"endpoint": self.endpoint or "", "project": self.project or ""},
        )
        # Retry transient errors, but give up in bounded time (the library default is 120 s).
        self.retry: Retry = DEFAULT_RETRY.with_timeout(self.timeout)
        self._given = client
        # requests.Session is not documented as thread-safe: one client per thread.
        self._local = threading.local()
        self.client  # noqa: B018 - build eagerly so bad configuration fails at open

    @property
    def client(self) -> storage.Client:
        """This thread's client."""
        if self._given is not None:
            return self._given
        client: storage.Client | None = getattr(self._local, "client", None)
        if client is None:
            with self._errors("connect"):
                if self.endpoint:
                    client = storage.Client(
                        project=self.project or "liquid",
                        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                        client_options={"api_endpoint": self.endpoint},
                    )
                else:
                    client = storage.Client(project=self.project)
            self._local.client = client
        return client

    def __repr__(self) -> str:
        return f"GCSStore({self.url!r})"

    @property
    def bucket(self) -> storage.Bucket:
        return self.client.bucket(self.bucket_name)

    def _key(self, locator: str) -> str:
        return self.prefix + check_locator(locator)

    @contextmanager
    def _errors(self, what: str, locator: str | None = None) -> Iterator[None]:
        try:
            yield
        except gexc.NotFound as exc:
            if locator is not None:
                raise ObjectNotFound(f"no object {locator!r} in {self.url}") from None
            raise StoreError(f"GCS store {self.url}: {what} failed: {exc}") from exc
        except (gexc.GoogleAPIError, GoogleAuthError, requests.RequestException) as exc:
            raise StoreError(f"GCS store {self.url}: {what} failed: {exc}") from exc

    def put(self, locator: str, chunks: Iterable[bytes], *, size_hint: int | None = None) -> int:
        """A single upload when everything fits in one chunk, else a resumable upload."""
        key = self._key(locator)
        # A body given as one buffer no larger than a chunk goes up as it is, not copied.
        lone, it = lone_chunk(chunks, self.chunk_size)
        buf = bytearray()
        if lone is None:
            for chunk in it:
                buf += chunk
                if len(buf) > self.chunk_size:
                    return self._resumable(locator, key, buf, it)
        body = lone if lone is not None else bytes(buf)
        blob = self.bucket.blob(key)
        with self._errors(f"put {locator!r}"):
            blob.upload_from_string(
                body,
                content_type="application/octet-stream",
                timeout=self.timeout,
                retry=self.retry,
            )
        return len(body)

    def _resumable(self, locator: str, key: str, buf: bytearray, rest: Iterator[bytes]) -> int:
        blob = self.bucket.blob(key, chunk_size=self.chunk_size)
        written = 0
        with self._errors(f"put {locator!r}"):
            # BlobWriter buffers one chunk and sends it; the object appears only at close().
            writer = blob.open(
                "wb",
                ignore_flush=True,
                content_type="application/octet-stream",
                timeout=self.timeout,
                retry=self.retry,
            )
            try:
                writer.write(bytes(buf))
                written += len(buf)
                buf.clear()
                for chunk in rest:
                    writer.write(chunk)
                    written += len(chunk)
            except BaseException:
                # Never finalise a partial object: cancel the resumable session instead of close().
                writer.terminate()
                raise
            writer.close()
        return written

    def open(self, locator: str, *, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Fetch metadata now (missing → ObjectNotFound), then ranged downloads of one generation."""
        check_range(start, end)
        key = self._key(locator)
        with self._errors(f"open {locator!r}", locator):
            blob = self.bucket.get_blob(key, timeout=self.timeout, retry=self.retry)
        if blob is None:
            raise ObjectNotFound(f"no object {locator!r} in {self.url}")
        size = int(blob.size or 0)
        stop = size if end is None else min(end, size)
        if start >= stop:
            return iter(())
        return self._stream(locator, key, blob.generation, start, stop)

    def _stream(
        self, locator: str, key: str, generation: int | None, start: int, stop: int
    ) -> Iterator[bytes]:
        pos = start
        while pos < stop:
            last = min(pos + CHUNK_SIZE, stop) - 1
            # A fresh blob per request: the download overwrites .generation from the response.
            blob = self.bucket.blob(key, generation=generation)
            with self._errors(f"read {locator!r}", locator):
                data: bytes = blob.download_as_bytes(
                    start=pos, end=last, checksum=None, timeout=self.timeout, retry=self.retry
                )
                served = blob.generation  # from X-Goog-Generation
                if served is None:
                    # Servers that omit the header (the emulator) may also ignore the pinned
                    # generation: confirm no newer version exists, so we never mix versions.
                    current = self.bucket.get_blob(key, timeout=self.timeout, retry=self.retry)
                    served = current.generation if current is not None else None
            if served != generation:
                raise StoreError(f"GCS store {self.url}: object {locator!r} was replaced while being read")
            if not data:
                raise StoreError(f"GCS store {self.url}: object {locator!r} was truncated while being read")
            yield data
            pos += len(data)

    def head(self, locator: str) -> ObjectStat:
        """Object metadata."""
        key = self._key(locator)
        with self._errors(f"head {locator!r}", locator):
            blob = self.bucket.get_blob(key, timeout=self.timeout, retry=self.retry)
        if blob is None:
            raise ObjectNotFound(f"no object {locator!r} in {self.url}")
        return ObjectStat(locator, int(blob.size or 0), blob.updated)

    def delete(self, locator: str) -> bool:
        """Delete; a 404 means nothing was there."""
        key = self._key(locator)
        try:
            with self._errors(f"delete {locator!r}", locator):
                self.bucket.delete_blob(key, timeout=self.timeout, retry=self.retry)
        except ObjectNotFound:
            return False
        return True

    def list(self, prefix: str = "") -> Iterator[ObjectStat]:
        """Paged listing; GCS returns names in lexicographic (UTF-8 byte) order."""
        return self._list(prefix)

    def _list(self, prefix: str) -> Iterator[ObjectStat]:
        with self._errors(f"list {prefix!r}"):
            for blob in self.client.list_blobs(
                self.bucket_name, prefix=self.prefix + prefix, timeout=self.timeout, retry=self.retry
            ):
                name = blob.name[len(self.prefix) :]
                if name and not name.endswith("/"):
                    yield ObjectStat(name, int(blob.size or 0), blob.updated)

    def ping(self) -> None:
        """Fetch the bucket's metadata."""
        with self._errors(f"ping (bucket {self.bucket_name!r})"):
            self.client.get_bucket(self.bucket_name, timeout=self.timeout, retry=self.retry)

    def close(self) -> None:
        """Close this thread's HTTP session."""
        client = getattr(self._local, "client", None) or self._given
        if client is not None:
            client.close()
