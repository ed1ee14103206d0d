"""S3Store: cold storage on any S3-compatible service through boto3 (AWS S3, MinIO, SeaweedFS).

URL::

    s3://bucket/prefix?endpoint=http://127.0.0.1:8333&region=us-east-1&sse=AES256
        &storage_class=STANDARD_IA&multipart_threshold=8MiB&part_size=8MiB

Server-side encryption is on by default: every PUT and multipart upload asks for ``sse=AES256``
(SSE-S3). ``sse=aws:kms`` (with ``sse_kms_key_id=...``) uses KMS; ``sse=none`` turns it off for a
server that refuses the header (MinIO without a KMS configured, for instance).

Credentials come from boto3's standard chain (``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY``, profiles, instance roles) unless the URL carries
``access_key`` and ``secret_key``; they never appear in :attr:`S3Store.url`.
Other options: ``addressing=path|virtual`` (default path when an endpoint is
given), ``timeout`` (seconds a socket read may wait, default 10), ``connect_timeout``
(default 2) and ``retries`` (attempts, default 2).

Whole reads kept in memory (:meth:`S3Store.read_into`, what ``LiquidService.get`` uses) GET
through a presigned URL on the client's own HTTP session and read the response straight into
the caller's buffer; anything unusual on that path falls back to the SDK's ``get_object``.

Objects below ``multipart_threshold`` go up in one PUT; larger ones stream as a
multipart upload of ``part_size`` parts (at most one part in memory), aborted on
any failure so no half object or orphaned parts remain. S3 publishes an object
only when the PUT or CompleteMultipartUpload succeeds, which makes puts atomic.
"""

from __future__ import annotations

import email.utils
import http.client
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from liquid.errors import IntegrityError, InvalidInput, ObjectNotFound, StoreError
from liquid.stores._common import Options, key_prefix, lone_chunk, missing, public_url
from liquid.stores.base import CHUNK_SIZE, ObjectStat, PendingUpload, check_locator, check_range

try:
    import boto3
    import botocore.session
    import botocore.utils
    from botocore.awsrequest import AWSRequest
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise missing("boto3", "s3") from exc

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

MIN_PART_SIZE = 5 * 1024 * 1024
DEFAULT_PART_SIZE = 8 * 1024 * 1024
_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})
#: Most keys one DeleteObjects request may name (S3's limit).
_DELETE_BATCH = 1000


class S3Store:
    """Objects under ``prefix`` in one S3 bucket."""

    def __init__(self, url: str, *, client: S3Client | None = None) -> None:
        """Args:
        url: ``s3://bucket/prefix?...`` (see the module docstring for options).
        client: a ready boto3 S3 client to use instead of building one.
        """
        opts = Options(url, "s3")
        if opts.parts.scheme != "s3" or not opts.parts.netloc:
            raise InvalidInput(f"S3 store URL must look like s3://bucket/prefix, got {url.split('?')[0]!r}")
        self.bucket = opts.parts.netloc
        self.prefix = key_prefix(opts.parts.path)
        self.endpoint = opts.text("endpoint")
        self.region = opts.text("region")
        sse = opts.text("sse", "AES256")
        self.sse = None if sse in ("none", "") else sse
        self.sse_kms_key_id = opts.text("sse_kms_key_id")
        if self.sse not in (None, "AES256", "aws:kms", "aws:kms:dsse"):
            raise InvalidInput(
                f"S3 sse must be AES256, aws:kms, aws:kms:dsse or none, got {self.sse!r}", field="url"
            )
        self.storage_class = opts.text("storage_class")
        self.part_size = opts.size("part_size", DEFAULT_PART_SIZE)
        self.multipart_threshold = opts.size("multipart_threshold", self.part_size)
        if self.part_size < MIN_PART_SIZE:
            raise InvalidInput(f"S3 part_size must be at least 5MiB (S3's minimum), got {self.part_size}")
        access_key, secret_key = opts.text("access_key"), opts.text("secret_key")
        if (access_key is None) != (secret_key is None):
            raise InvalidInput("S3 store URL needs both access_key and secret_key, or neither", field="url")
        addressing = opts.text("addressing", "path" if self.endpoint else "auto")
        # Bounded by default: a hung server must cost a request seconds, not minutes (each retry
        # waits its own timeouts). ``timeout`` bounds each socket read, not a whole transfer.
        timeout = opts.number("timeout", 10) or 10
        connect_timeout = opts.number("connect_timeout", 2) or 2
        retries = opts.number("retries", 2) or 1
        self.list_order = opts.text("list_order", "sort")
        if self.list_order not in ("sort", "server"):
            raise InvalidInput(
                f"S3 list_order must be 'sort' or 'server', got {self.list_order!r}", field="url"
            )
        opts.finish()
        self.url = public_url(
            f"s3://{self.bucket}/{self.prefix}",
            {
                "endpoint": self.endpoint or "",
                "region": self.region or "",
                "sse": self.sse or "none",
                "storage_class": self.storage_class or "",
            },
        )
        if client is None:
            config = Config(
                s3={"addressing_style": cast(Any, addressing)},
                connect_timeout=connect_timeout,
                read_timeout=timeout,
                retries={"max_attempts": retries, "mode": "standard"},
                # Presigned URLs (presign_get, and read_into's GET) signed as every request is:
                # botocore would otherwise presign with SigV2, which AWS regions since 2014 refuse.
                signature_version="s3v4",
                # S3-compatible servers differ on the newer default CRC trailers: send only when required.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            )
            with self._errors("connect"):
                core = botocore.session.get_session()
                # botocore reads every Last-Modified with dateutil, about 0.2 ms a response: a
                # tenth of a small GET's client time. The stdlib parses S3's two formats 15x faster.
                core.get_component("response_parser_factory").set_parser_defaults(
                    timestamp_parser=_parse_timestamp
                )
                session = boto3.session.Session(
                    aws_access_key_id=access_key,
                    aws_secret_access_key=secret_key,
                    region_name=self.region,
                    botocore_session=core,
                )
                client = session.client("s3", endpoint_url=self.endpoint, config=config)
        self.client = client

    def __repr__(self) -> str:
        return f"S3Store({self.url!r})"

    def _key(self, locator: str) -> str:
        return self.prefix + check_locator(locator)

    @contextmanager
    def _errors(self, what: str, locator: str | None = None) -> Iterator[None]:
        """Map botocore failures: absent keys to ObjectNotFound, everything else to StoreError."""
        try:
            yield
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if locator is not None and code in _NOT_FOUND:
                raise ObjectNotFound(f"no object {locator!r} in {self.url}") from None
            raise StoreError(f"S3 store {self.url}: {what} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StoreError(f"S3 store {self.url}: {what} failed: {exc}") from exc

    def incomplete_uploads(self, prefix: str = "") -> Iterator[PendingUpload]:
        """Multipart uploads under ``prefix`` never completed or aborted (a put that crashed)."""
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix + prefix}
        while True:
            with self._errors(f"list multipart uploads under {prefix!r}"):
                page = self.client.list_multipart_uploads(**args)
            for upload in page.get("Uploads", []):
                key = upload.get("Key", "")
                if key.startswith(self.prefix) and "UploadId" in upload:
                    yield PendingUpload(key[len(self.prefix) :], upload["UploadId"], upload.get("Initiated"))
            if not page.get("IsTruncated"):
                return
            args["KeyMarker"] = page.get("NextKeyMarker", "")
            args["UploadIdMarker"] = page.get("NextUploadIdMarker", "")

    def abort_upload(self, upload: PendingUpload) -> None:
        key = self._key(upload.locator)
        with self._errors(f"abort multipart upload of {upload.locator!r}"):
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload.upload_id)
            except ClientError as exc:
                # Completed or aborted meanwhile (another gc run): what we wanted.
                if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                    raise

    def _put_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {}
        if self.sse:
            args["ServerSideEncryption"] = self.sse
            if self.sse_kms_key_id:
                args["SSEKMSKeyId"] = self.sse_kms_key_id
        if self.storage_class:
            args["StorageClass"] = self.storage_class
        return args

    def put(self, locator: str, chunks: Iterable[bytes], *, size_hint: int | None = None) -> int:
        """One PUT below the threshold, else a streamed multipart upload."""
        key = self._key(locator)
        parts = _parts(chunks, self.part_size)
        # Buffer parts until the threshold tells us which upload to use (bounded by the threshold).
        head: list[bytes] = []
        buffered = 0
        for part in parts:
            head.append(part)
            buffered += len(part)
            if buffered >= self.multipart_threshold:
                return self._multipart(locator, key, head, parts)
        body = b"".join(head)
        with self._errors(f"put {locator!r}"):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, **self._put_args())
        return len(body)

    def _multipart(self, locator: str, key: str, head: list[bytes], rest: Iterator[bytes]) -> int:
        with self._errors(f"put {locator!r} (create multipart upload)"):
            upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key, **self._put_args())[
                "UploadId"
            ]
        written = 0
        done: list[Any] = []
        try:

            def all_parts() -> Iterator[bytes]:
                while head:
                    yield head.pop(0)  # release each buffered part once sent
                yield from rest

            with self._errors(f"put {locator!r} (upload part)"):
                for number, part in enumerate(all_parts(), start=1):
                    resp = self.client.upload_part(
                        Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=part
                    )
                    done.append({"PartNumber": number, "ETag": resp["ETag"]})
                    written += len(part)
                self.client.complete_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done}
                )
        except BaseException:
            # If even the abort fails, a bucket lifecycle rule is the backstop for orphaned parts.
            with suppress(ClientError, BotoCoreError):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            raise
        return written

    def open(self, locator: str, *, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """GET (with a Range header when needed) now; missing → ObjectNotFound before iterating."""
        check_range(start, end)
        key = self._key(locator)
        if end is not None and end == start:
            self.head(locator)  # an empty window still needs the existence check
            return iter(())
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if start or end is not None:
            args["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            with self._errors(f"open {locator!r}", locator):
                resp = self.client.get_object(**args)
        except StoreError as exc:
            cause = exc.__cause__
            if (
                isinstance(cause, ClientError)
                and cause.response.get("Error", {}).get("Code") == "InvalidRange"
            ):
                return iter(())  # 416: the object exists but starts before `start`
            raise
        return self._stream(locator, resp["Body"])

    def _stream(self, locator: str, body: Any) -> Iterator[bytes]:
        try:
            with self._errors(f"read {locator!r}"):
                yield from body.iter_chunks(CHUNK_SIZE)
        finally:
            body.close()

    def read_into(self, locator: str, buffer: memoryview) -> Iterator[int]:
        """GET the whole object now, then fill ``buffer`` straight from the socket (see BufferReadStore).

        boto3's ``read()`` makes one bytes object (and ``iter_chunks`` a chunk object per step,
        which Python 3.11's http.client fills through a zeroed scratch buffer and copies again);
        here the HTTP response reads into ``buffer`` itself, so the only copy is the kernel's.
        """
        key = self._key(locator)
        got = self._presigned_get(key)
        if got is None:
            with self._errors(f"open {locator!r}", locator):
                resp = self.client.get_object(Bucket=self.bucket, Key=key)
            got = resp["Body"], int(resp["ContentLength"])
        body, size = got
        if size != buffer.nbytes:
            body.close()
            raise IntegrityError(
                f"object {locator!r} in {self.url} is {size} bytes, the catalog says {buffer.nbytes}"
            )
        return self._fill(locator, body, buffer)

    def _presigned_get(self, key: str) -> tuple[Any, int] | None:
        """The object's response body and size through a presigned GET on the client's own HTTP
        session (same pool, timeouts, proxies and TLS settings); None unless that answered 200.

        botocore spends about a millisecond of CPU on every call around the request (endpoint
        rules, events, retry bookkeeping, response parsing); a presigned URL signs in a fifth of
        that, and a plain GET needs none of the rest. Anything else (a stale pooled connection, a
        404, a throttle, no such session in another botocore) takes the SDK's ``get_object``,
        which retries and maps errors as every other call does.
        """
        session = getattr(getattr(self.client, "_endpoint", None), "http_session", None)
        if session is None:
            return None
        try:
            url = self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=60
            )
            resp = session.send(AWSRequest(method="GET", url=url, stream_output=True).prepare())
        except BotoCoreError:
            return None
        length = resp.headers.get("Content-Length")
        if resp.status_code != 200 or length is None:
            resp.raw.close()
            return None
        return resp.raw, int(length)

    def _fill(self, locator: str, body: Any, buffer: memoryview) -> Iterator[int]:
        size = buffer.nbytes
        filled = 0
        readinto, release = _socket_reader(body)
        try:
            with self._errors(f"read {locator!r}"):
                while filled < size:
                    try:
                        n = readinto(buffer[filled : filled + CHUNK_SIZE])
                    except (OSError, http.client.HTTPException) as exc:
                        raise StoreError(
                            f"S3 store {self.url}: read {locator!r} failed after {filled} of {size} "
                            f"bytes: {exc}"
                        ) from exc
                    if not n:
                        raise StoreError(
                            f"S3 store {self.url}: read {locator!r} ended after {filled} of {size} bytes"
                        )
                    filled += n
                    yield filled
            release()  # the response is complete: its connection goes back to the pool
        finally:
            body.close()

    def head(self, locator: str) -> ObjectStat:
        """HEAD the object."""
        key = self._key(locator)
        with self._errors(f"head {locator!r}", locator):
            resp = self.client.head_object(Bucket=self.bucket, Key=key)
        return ObjectStat(locator, int(resp["ContentLength"]), resp.get("LastModified"))

    def delete(self, locator: str) -> bool:
        """HEAD then DELETE: S3's DELETE does not say whether anything was there."""
        try:
            self.head(locator)
        except ObjectNotFound:
            return False
        with self._errors(f"delete {locator!r}"):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(locator))
        return True

    def delete_many(self, locators: Sequence[str]) -> None:
        """DeleteObjects, up to 1000 keys a request; absent keys are not an error.

        Raises:
            StoreError: the request failed, or the service refused some keys (the first is named).
        """
        keys = [self._key(locator) for locator in locators]
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start : start + _DELETE_BATCH]
            with self._errors(f"delete {len(batch)} objects"):
                resp = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
                )
            errors = resp.get("Errors", [])
            if errors:
                first = errors[0]
                name = first.get("Key", "?")[len(self.prefix) :]
                raise StoreError(
                    f"S3 store {self.url}: could not delete {len(errors)} of {len(batch)} objects; first"
                    f" {name!r}: {first.get('Code')} {first.get('Message')}"
                )

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
        paginator = self.client.get_paginator("list_objects_v2")
        with self._errors(f"list {prefix!r}"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for obj in page.get("Contents", []):
                    name = obj["Key"][len(self.prefix) :]
                    if name and not name.endswith("/"):  # skip folder markers other tools create
                        yield ObjectStat(name, int(obj["Size"]), obj.get("LastModified"))

    def presign_get(self, locator: str, expires: int = 3600) -> str:
        """A time-limited GET URL for the object, for handing bytes out without proxying them."""
        key = self._key(locator)
        with self._errors(f"presign {locator!r}"):
            return self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires
            )

    def ping(self) -> None:
        """HEAD the bucket: checks the endpoint, the credentials and that the bucket exists."""
        with self._errors(f"ping (head bucket {self.bucket!r})"):
            self.client.head_bucket(Bucket=self.bucket)

    def close(self) -> None:
        """Close the client's connection pool."""
        self.client.close()


def _parse_timestamp(value: str) -> datetime:
    """S3's timestamps: RFC 7231 in headers (``Tue, 01 Dec 2026 19:24:35 GMT``), ISO 8601 in XML."""
    try:
        if value[:1].isalpha():
            return email.utils.parsedate_to_datetime(value)
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return botocore.utils.parse_timestamp(value)  # whatever else an S3-compatible service sends


def _socket_reader(body: Any) -> tuple[Callable[[memoryview], int], Callable[[], None]]:
    """``readinto`` of the http.client response under a body, and how to hand its connection
    back once it is read to the end.

    botocore's StreamingBody wraps urllib3's response, which wraps http.client's: only the last
    reads into a caller's buffer without a copy (urllib3's ``readinto`` reads a bytes object,
    then copies it). Its attributes are private, so anything unexpected (another urllib3, bytes
    already read or decoded) takes the copying way through ``body.read``.
    """
    raw: Any = getattr(body, "_raw_stream", body)  # botocore's StreamingBody, or urllib3's own
    fp = getattr(raw, "_fp", None)
    if (
        isinstance(fp, http.client.HTTPResponse)
        and getattr(raw, "_fp_bytes_read", None) == 0
        and not len(getattr(raw, "_decoded_buffer", b""))
        and callable(getattr(raw, "release_conn", None))
    ):

        def release() -> None:
            if fp.isclosed():  # http.client closes itself at the end of its Content-Length
                raw.release_conn()

        return fp.readinto, release

    def copy_into(view: memoryview) -> int:
        data = body.read(view.nbytes)
        view[: len(data)] = data
        return len(data)

    return copy_into, lambda: None


def _parts(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Regroup chunks into ``size``-byte parts with one copy per byte (parts are big: copies count).

    A body that comes as one ``bytes`` chunk no larger than a part is that part, not copied.
    """
    lone, rest = lone_chunk(chunks, size)
    if lone is not None:
        yield lone
        return
    buf = bytearray()
    for chunk in rest:
        buf += chunk
        while len(buf) >= size:
            with memoryview(buf) as view:
                part = bytes(view[:size])
            del buf[:size]
            yield part
    if buf:
        yield bytes(buf)
