"""Batch resolve on an asyncio client: the answers, errors, budget calls and counted reads of the
thread path, with no worker thread when every version is known and proven live by its copy."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import redis.asyncio

from liquid.embedded import free_port
from liquid.errors import LiquidError, ObjectGone, ObjectNotFound
from liquid.hotcache import encode, hot_key
from liquid.refs import ResultRef
from liquid.service import LiquidService, Resolution, Resolved
from liquid.versions import VersionCache, VersionFacts


def hot_object(svc: LiquidService, tenant: str, key: str, data: bytes, **kw: Any) -> ResultRef:
    ref = svc.put(tenant, "loop", key, data, **kw).ref
    row = svc.fast.find(ref.tenant, ref.namespace, ref.key, ref.version)
    assert row is not None and svc.fill_hot(ref, row.id)
    return ref


class Offload:
    """The API's worker-thread hop, counted."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, fn: Callable[[], Resolved]) -> Resolved:
        self.calls += 1
        return await asyncio.to_thread(fn)


class Wants:
    """A ``want`` that takes every value and remembers whom it was asked about, in order."""

    def __init__(self) -> None:
        self.asked: list[int] = []

    def __call__(self, position: int, facts: VersionFacts) -> bool:
        self.asked.append(position)
        return True


def shown(results: Resolved) -> list[tuple[str, Any]]:
    """Each answer as something comparable: an error's class, or the facts and the bytes."""
    out: list[tuple[str, Any]] = []
    for r in results:
        if isinstance(r, LiquidError):
            out.append(("error", type(r)))
        else:
            assert isinstance(r, Resolution)
            out.append(("ok", (r.facts, None if r.data is None else bytes(r.data))))
    return out


def on_loop(
    svc: LiquidService,
    tenant: str,
    refs: list[ResultRef],
    *,
    client: redis.asyncio.Redis | None = None,
) -> tuple[list[tuple[str, Any]], Offload, Wants]:
    offload, wants = Offload(), Wants()
    assert svc.hot is not None

    async def go() -> Resolved:
        own = client is None
        c = svc.hot.async_client() if client is None else client  # type: ignore[union-attr]
        assert c is not None
        try:
            return await svc.aresolve_many(tenant, refs, c, want=wants, offload=offload)
        finally:
            if own:
                await c.aclose()

    return shown(asyncio.run(go())), offload, wants


def in_thread(svc: LiquidService, tenant: str, refs: list[ResultRef]) -> tuple[list[tuple[str, Any]], Wants]:
    wants = Wants()
    return shown(svc.resolve_many(tenant, refs, want=wants)), wants


def test_known_hot_versions_take_no_worker_thread_and_answer_as_the_thread_path(
    service: LiquidService, tenant: str, other_tenant: str
) -> None:
    assert service.access is not None
    data = [os.urandom(500 + i) for i in range(3)]
    refs = [hot_object(service, tenant, f"k{i}", d) for i, d in enumerate(data)]
    theirs = ResultRef(other_tenant, "loop", "k0", 1)
    batch = [refs[0], theirs, refs[1], refs[2], refs[0]]
    before = service.access.noted
    got, offload, wants = on_loop(service, tenant, batch)
    assert offload.calls == 0  # every version known and proven live by its copy
    assert [b for _, (_, b) in (g for g in got if g[0] == "ok")] == [data[0], data[1], data[2], data[0]]
    assert got[1] == ("error", ObjectNotFound)
    counted = service.access.noted - before
    assert counted == 4  # another tenant's ref is not a read
    expected, sync_wants = in_thread(service, tenant, batch)
    assert got == expected and wants.asked == sync_wants.asked == [0, 2, 3, 4]
    assert service.access.noted - before == 2 * counted


def test_versions_no_copy_proves_live_go_to_the_catalog_in_one_hop(
    service: LiquidService, tenant: str
) -> None:
    hot = service.hot
    assert hot is not None
    hot_data, warm_data = os.urandom(600), os.urandom(700)
    live = hot_object(service, tenant, "live", hot_data)
    warm = service.put(tenant, "loop", "warm", warm_data).ref  # known (its writer), no copy
    deleted = hot_object(service, tenant, "deleted", b"deleted bytes")
    service.delete(tenant, deleted)  # the delete killed its copy; this process still knows its facts
    stale = hot_object(service, tenant, "stale", b"right bytes")
    wrong = b"wrong bytes"
    hot.client.set(hot_key(stale), encode(wrong, hashlib.sha256(wrong).hexdigest(), "text/plain"))
    assert all(service.known(r) is not None for r in (live, warm, deleted, stale))
    batch = [live, warm, deleted, stale]
    got, offload, wants = on_loop(service, tenant, batch)
    assert offload.calls == 1  # the catalog and the homes, once, in a worker thread
    assert [g[1][1] if g[0] == "ok" else g[1] for g in got] == [
        hot_data,
        warm_data,
        ObjectGone,
        b"right bytes",
    ]
    assert hot.client.get(hot_key(stale)) is None  # the wrong copy was dropped, as get() drops it
    expected, sync_wants = in_thread(service, tenant, batch)
    assert got == expected and wants.asked == sync_wants.asked


def test_a_version_this_process_has_not_seen_sends_the_whole_batch_to_the_thread_path(
    service: LiquidService, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = [os.urandom(400), os.urandom(450)]
    refs = [hot_object(service, tenant, f"new{i}", d) for i, d in enumerate(data)]
    missing = ResultRef(tenant, "loop", "never-written", 1)
    batch = [refs[0], missing, refs[1]]
    # As another process sees them: facts unknown, so the catalog comes first and want after it.
    monkeypatch.setattr(service, "versions", VersionCache())
    got, offload, wants = on_loop(service, tenant, batch)
    assert offload.calls == 1
    assert got[0] == ("ok", (service.known(refs[0]), data[0])) and got[1] == ("error", ObjectNotFound)
    assert wants.asked == [0, 2]  # asked in order, only about versions that exist
    # Learned now: the next batch of the same versions is proven by the copies alone.
    again, offload_again, _ = on_loop(service, tenant, [refs[0], refs[1]])
    assert offload_again.calls == 0 and [g[1][1] for g in again] == data
    monkeypatch.setattr(service, "versions", VersionCache())
    expected, _ = in_thread(service, tenant, batch)
    assert got == expected


def test_a_version_past_its_expiry_is_gone_though_its_copy_lingers(
    service: LiquidService, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(300)
    ref = hot_object(service, tenant, "ttl", data, ttl=300)
    got, offload, _ = on_loop(service, tenant, [ref])
    assert got == [("ok", (service.known(ref), data))] and offload.calls == 0
    later = service.clock() + timedelta(seconds=301)
    monkeypatch.setattr(service, "clock", lambda: later)  # Redis still holds the copy
    got, offload, _ = on_loop(service, tenant, [ref])
    assert got == [("error", ObjectGone)] and offload.calls == 1


def test_a_kill_that_did_not_reach_redis_is_never_served_from_the_copy(
    service: LiquidService, tenant: str
) -> None:
    hot = service.hot
    assert hot is not None
    data, other = os.urandom(256), os.urandom(257)
    ref = hot_object(service, tenant, "unkilled", data)
    keep = hot_object(service, tenant, "kept", other)
    raw = hot.client.get(hot_key(ref))
    service.delete(tenant, ref)
    # As if the delete's kill had failed: the copy is back and the kill is pending in this process.
    hot.client.set(hot_key(ref), raw)
    hot._unkilled.add(ref)
    try:
        got, offload, _ = on_loop(service, tenant, [ref, keep])
        # No copy is trusted while a kill is pending: the catalog judges both.
        assert got == [("error", ObjectGone), ("ok", (service.known(keep), other))]
        assert offload.calls == 1
    finally:
        hot._unkilled.discard(ref)
        hot.client.delete(hot_key(ref))


def test_with_redis_unreachable_the_answers_come_from_the_homes(service: LiquidService, tenant: str) -> None:
    hot = service.hot
    assert hot is not None
    data = [os.urandom(900), os.urandom(901)]
    refs = [hot_object(service, tenant, f"down{i}", d) for i, d in enumerate(data)]
    deleted = service.put(tenant, "loop", "down-deleted", b"x").ref
    service.delete(tenant, deleted)
    errors = hot.errors
    nobody = redis.asyncio.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=2)
    got, offload, _ = on_loop(service, tenant, [*refs, deleted], client=nobody)
    asyncio.run(nobody.aclose())
    assert [g[1][1] for g in got[:2]] == data and got[2] == ("error", ObjectGone)
    assert offload.calls == 1 and hot.errors == errors + 1


def test_a_large_hot_reply_is_read_in_the_worker_thread_with_the_same_answers(
    service: LiquidService, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import liquid.service

    assert service.access is not None
    data = [os.urandom(600), os.urandom(601)]
    refs = [hot_object(service, tenant, f"large{i}", d) for i, d in enumerate(data)]
    monkeypatch.setattr(liquid.service, "LOOP_READ_MAX", 1000)  # the two values pass it together
    before = service.access.noted
    got, offload, wants = on_loop(service, tenant, refs)
    assert offload.calls == 1 and [g[1][1] for g in got] == data
    assert service.access.noted == before + 2 and wants.asked == [0, 1]
    _, offload, _ = on_loop(service, tenant, refs[:1])  # one alone stays on the loop
    assert offload.calls == 0
    expected, _ = in_thread(service, tenant, refs)
    assert got == expected


def test_the_asyncio_client_packs_commands_in_c_as_redis_py_packs_them_in_python(
    service: LiquidService, tenant: str
) -> None:
    hot = service.hot
    assert hot is not None
    client = hot.async_client()
    assert client is not None
    conn_class = client.connection_pool.connection_class
    python = redis.asyncio.Connection.pack_command  # redis-py's own, in Python
    packed = conn_class.pack_command
    assert packed is not python
    args = ("MGET", "liquid:hot:{ab}:t/ns/k é@1", b"raw\x00key", 42, 1.5)
    conn = conn_class()
    assert b"".join(packed(conn, *args)) == b"".join(python(conn, *args))
    asyncio.run(client.aclose())  # never connected
    # And such a client works: a batch of copies read, checked and answered (on_loop makes one).
    data = os.urandom(100)
    ref = hot_object(service, tenant, "packed", data)
    got, offload, _ = on_loop(service, tenant, [ref, ref])
    assert [g[1][1] for g in got] == [data, data] and offload.calls == 0
