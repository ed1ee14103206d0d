"""The HTTP client refuses bad input before sending it, as the in-process client does.

Each case is checked over HTTP against a real server, in-process (``Client.embedded``) where
the two must agree, and against a transport that records requests (nothing may be sent).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import httpx
import pytest

from liquid.client import AsyncClient, BadRequest, Client, NotFound
from liquid.client._base import put_headers, retention_text
from liquid.service import LiquidService
from tests.api.conftest import TenantKey

BAD_KEYS = ["../victimns/owned", "a/../b", "./a", "a/./b", "a/..", "a//b", "a/", ""]
BAD_NAMESPACES = ["..", ".", "", "../x", "Upper"]


@pytest.fixture
def sent() -> Iterator[tuple[Client, list[httpx.Request]]]:
    """A client whose transport records every request (and answers 500)."""
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(500, json={"detail": "should not have been sent"})

    with Client("http://liquid.test", transport=httpx.MockTransport(handler), retries=0) as lq:
        yield lq, requests


@pytest.fixture
def embedded(api_service: LiquidService, tk: TenantKey) -> Iterator[Client]:
    with Client.embedded(api_service, tk.tenant) as lq:
        yield lq


def refused(call: Callable[[], Any], field: str) -> BadRequest:
    with pytest.raises(BadRequest) as err:
        call()
    assert err.value.status == 400 and err.value.field == field, err.value
    return err.value


# ------------------------------------------------------------ B3: namespace and key in the path


@pytest.mark.parametrize(
    ("namespace", "key", "field"),
    [*(("cl", key, "key") for key in BAD_KEYS), *((ns, "k", "namespace") for ns in BAD_NAMESPACES)],
)
def test_a_bad_name_never_leaves_the_client(
    client: Client,
    embedded: Client,
    sent: tuple[Client, list[httpx.Request]],
    namespace: str,
    key: str,
    field: str,
) -> None:
    unsent, requests = sent
    for lq in (client, embedded, unsent):
        refused(lambda lq=lq: lq.put(namespace, key, b"x"), field)  # type: ignore[misc]
        refused(lambda lq=lq: lq.latest(namespace, key), field)  # type: ignore[misc]
    for lq in (client, unsent):
        refused(lambda lq=lq: lq.versions(namespace, key), field)  # type: ignore[misc]
        refused(lambda lq=lq: lq.explain(namespace, key), field)  # type: ignore[misc]
        refused(lambda lq=lq: lq.attach_vectors(namespace, key, [[1.0, 0.0]]), field)  # type: ignore[misc]
        if field == "namespace":
            refused(lambda lq=lq: lq.list(namespace), field)  # type: ignore[misc]
    assert requests == []


def test_dot_segments_do_not_reach_another_namespace_or_key(
    client: Client, api_service: LiquidService, tk: TenantKey
) -> None:
    refused(lambda: client.put("cl", "../victimns/owned", b"x"), "key")
    refused(lambda: client.put("cl", "a/../b", b"x"), "key")
    for namespace, key in (("victimns", "owned"), ("cl", "b")):
        with pytest.raises(NotFound):
            client.latest(namespace, key)
    with pytest.raises(FileNotFoundError):
        api_service.latest(tk.tenant, "victimns", "owned")
    # A well-formed key with dots inside its segments is fine.
    ref = client.put("cl", "a/..b/c.d/...", b"x")
    assert client.latest("cl", "a/..b/c.d/...") == ref.ref
    assert client.versions("cl", "a/..b/c.d/...")[0]["version"] == 1


def test_a_key_ending_in_vectors_is_refused_before_sending(sent: tuple[Client, list[httpx.Request]]) -> None:
    unsent, requests = sent
    refused(lambda: unsent.put("kb", "model/vectors", b"x"), "key")
    assert requests == []


def test_the_async_client_checks_the_path_too(base_url: str, tk: TenantKey) -> None:
    async def main() -> None:
        async with AsyncClient(base_url, api_key=tk.key, retries=0) as lq:
            for key in ("../victimns/owned", "a/../b", "./a"):
                for call in (
                    lq.put("cl", key, b"x"),
                    lq.latest("cl", key),
                    lq.versions("cl", key),
                    lq.explain("cl", key),
                    lq.attach_vectors("cl", key, [[1.0]]),
                ):
                    with pytest.raises(BadRequest) as err:
                        await call
                    assert err.value.field == "key"
            for ns_call in (lq.put("..", "k", b"x"), lq.list("..")):
                with pytest.raises(BadRequest) as err:
                    await ns_call
                assert err.value.field == "namespace"
            with pytest.raises(NotFound):
                await lq.latest("cl", "b")

    asyncio.run(main())


# ------------------------------------------------------------------------ B4: the ttl header


@pytest.mark.parametrize(
    ("ttl", "text"),
    [
        (1e-5, "0.00001"),
        (timedelta(microseconds=1), "0.000001"),
        (1e16, "10000000000000000"),
        (3600, "3600.0"),
        (0.1, "0.1"),
        (timedelta(days=30), "2592000.0"),
        (123456.789, "123456.789"),
    ],
)
def test_the_retention_header_is_plain_decimal_of_the_same_number(ttl: Any, text: str) -> None:
    assert retention_text(ttl) == text
    seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else float(ttl)
    assert float(text) == seconds


@pytest.mark.parametrize("ttl", [1e-5, timedelta(microseconds=1), 1e-7])
def test_a_tiny_ttl_is_accepted_over_http_as_in_process(client: Client, embedded: Client, ttl: Any) -> None:
    for lq in (client, embedded):
        assert lq.put("ttl", "tiny", b"x", ttl=ttl).ref.key == "tiny"


def test_a_ttl_keeps_its_value_over_http(client: Client) -> None:
    before = datetime.now(UTC)
    ref = client.put("ttl", "exact", b"x", ttl=123456.5)
    expires = client.head(ref.ref).expires_at
    assert expires is not None
    assert abs((expires - before).total_seconds() - 123456.5) < 60


@pytest.mark.parametrize(
    ("ttl", "says"),
    [
        (1e16, "ends past 9999-01-01"),
        (float("inf"), "ends past 9999-01-01"),
        (-5, "must be positive"),
        (0, "must be positive"),
        (float("nan"), "must be positive"),
    ],
)
def test_a_bad_ttl_gets_the_same_answer_over_http_as_in_process(
    client: Client, embedded: Client, ttl: float, says: str
) -> None:
    for lq in (client, embedded):
        err = refused(partial(lq.put, "ttl", "bad", b"x", ttl=ttl), "X-Liquid-Retention")
        assert says in err.detail and "pattern" not in err.detail


# ------------------------------------------------------------------------------ B5: tag types


@pytest.mark.parametrize("tags", [{"a": None}, {"a": 1}, {1: "a"}, {"a": b"x"}, {"": "x"}, {"a": "\ud800"}])
def test_tags_that_are_not_text_are_refused_over_http_as_in_process(
    client: Client, embedded: Client, sent: tuple[Client, list[httpx.Request]], tags: dict[Any, Any]
) -> None:
    unsent, requests = sent
    for lq in (client, embedded, unsent):
        refused(lambda lq=lq: lq.put("tg", "k", b"x", tags=tags), "X-Liquid-Tags")  # type: ignore[misc]
    assert requests == []
    with pytest.raises(NotFound):
        client.latest("tg", "k")


def test_text_tags_still_go_through(client: Client) -> None:
    ref = client.put("tg", "ok", b"x", tags={"a": "1", "b": "", "é": "x=y&z"})
    item = client.versions("tg", "ok")[0]
    assert item["tags"] == {"a": "1", "b": "", "é": "x=y&z"}
    assert item["version"] == ref.ref.version


def test_the_async_client_refuses_bad_tags(base_url: str, tk: TenantKey) -> None:
    async def main() -> None:
        async with AsyncClient(base_url, api_key=tk.key, retries=0) as lq:
            bad: list[Any] = [{"a": None}, {"a": 1}]
            for tags in bad:
                with pytest.raises(BadRequest) as err:
                    await lq.put("tg", "k", b"x", tags=tags)
                assert err.value.field == "X-Liquid-Tags"

    asyncio.run(main())


# ------------------------------------------------------------------- B7: header-bound texts

TEXT_FIELDS = ["classification", "trace_id", "correlation_id", "execution_id"]
#: The field an error names: the header the text travels in (in process too, which answers as HTTP).
HEADER = {
    "classification": "X-Liquid-Classification",
    "trace_id": "X-Liquid-Trace-Id",
    "correlation_id": "X-Liquid-Correlation-Id",
    "execution_id": "X-Liquid-Execution-Id",
    "scope": "X-Liquid-Scope",
}


@pytest.mark.parametrize("field", TEXT_FIELDS)
@pytest.mark.parametrize("value", ["a\nb", "a\rb", "tab\there", "", "x" * 257, "a\x00b"])
def test_a_header_text_the_service_refuses_is_refused_over_http_alike(
    client: Client,
    embedded: Client,
    sent: tuple[Client, list[httpx.Request]],
    field: str,
    value: str,
) -> None:
    unsent, requests = sent
    errs = [
        refused(lambda lq=lq: lq.put("hd", "k", b"x", **{field: value}), HEADER[field])  # type: ignore[misc]
        for lq in (client, embedded, unsent)
    ]
    assert errs[0].detail == errs[1].detail == errs[2].detail
    assert requests == []


@pytest.mark.parametrize("field", [*TEXT_FIELDS, "scope"])
@pytest.mark.parametrize("value", ["é", "日本", "a\x7fb", " lead", "trail ", "\ud800"])
def test_a_header_text_http_cannot_carry_is_refused_before_sending(
    client: Client, sent: tuple[Client, list[httpx.Request]], field: str, value: str
) -> None:
    unsent, requests = sent
    for lq in (client, unsent):
        err = refused(lambda lq=lq: lq.put("hd", "k", b"x", **{field: value}), HEADER[field])  # type: ignore[misc]
        if field != "scope" and value.strip(" ") == value and "\x7f" not in value:
            assert "ASCII" in err.detail  # DEL is the service's own refusal (a control character)
    assert requests == []


def test_a_content_type_with_outer_spaces_is_refused_before_sending(
    sent: tuple[Client, list[httpx.Request]],
) -> None:
    unsent, requests = sent
    refused(lambda: unsent.put("hd", "k", b"x", content_type=" text/plain"), "Content-Type")
    refused(lambda: unsent.put("hd", "k", b"x", content_type="text/plain\n"), "Content-Type")
    assert requests == []


def test_good_header_texts_round_trip(client: Client, embedded: Client) -> None:
    for lq in (client, embedded):
        ref = lq.put(
            "hd",
            "ok",
            b"x",
            classification="internal",
            trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
            correlation_id="run 7 / step 2",
            execution_id="exec-1",
            scope="execution",
        )
        assert ref.ref.key == "ok"


def test_the_async_client_refuses_header_texts(base_url: str, tk: TenantKey) -> None:
    async def main() -> None:
        async with AsyncClient(base_url, api_key=tk.key, retries=0) as lq:
            texts: dict[str, Any] = {"correlation_id": "a\nb", "classification": "é", "trace_id": "日本"}
            for field, value in texts.items():
                with pytest.raises(BadRequest) as err:
                    await lq.put("hd", "k", b"x", **{field: value})
                assert err.value.field == HEADER[field]

    asyncio.run(main())


def test_put_headers_raises_bad_request_with_the_field() -> None:
    base: dict[str, Any] = {
        "content_type": "text/plain",
        "size": 1,
        "tags": None,
        "classification": None,
        "ttl": None,
        "expires_at": None,
        "trace_id": None,
        "correlation_id": None,
        "execution_id": None,
        "legal_hold": False,
    }
    with pytest.raises(BadRequest) as err:
        put_headers(**{**base, "content_type": "a\x00b"})
    assert err.value.field == "Content-Type"
    headers = put_headers(**{**base, "ttl": 1e-5, "tags": {"a": "b c"}})
    assert headers["X-Liquid-Retention"] == "0.00001"
    assert headers["X-Liquid-Tags"] == "a=b+c"
    # In process nothing is sent: only what the service also checks is refused.
    assert put_headers(**{**base, "classification": "é", "wire": False}) == {"Content-Type": "text/plain"}
