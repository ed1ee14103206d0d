"""RedisStore (on Valkey) passes the store contract; plus TTL and key layout."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
import redis

from liquid.errors import StoreError
from liquid.stores import open_store, read_bytes, write_bytes
from liquid.stores.redis import RedisStore

from .store_contract import StoreContract, StoreFactory


def _stores(url: str) -> Iterator[StoreFactory]:
    """RedisStores on ``url``, each under a prefix of its own, emptied and closed afterwards."""
    made: list[RedisStore] = []

    def make() -> RedisStore:
        store = RedisStore(url, prefix=f"liquid:test:{uuid.uuid4().hex[:12]}:")
        made.append(store)
        return store

    yield make
    for store in made:
        # One key per UNLINK: a cluster takes the keys of one slot only in one command.
        for key in list(store.client.scan_iter(match=store.prefix + "*")):
            store.client.unlink(key)
        store.close()


@pytest.fixture
def store_factory(redis_url: str) -> Iterator[StoreFactory]:
    yield from _stores(redis_url)


class TestRedisStore(StoreContract):
    pass


class TestRedisStoreThroughSentinel(StoreContract):
    """The same contract on the primary a Sentinel names (``redis+sentinel://``)."""

    @pytest.fixture
    def store_factory(self, valkey_sentinel_url: str) -> Iterator[StoreFactory]:
        yield from _stores(valkey_sentinel_url)


class TestRedisStoreOnCluster(StoreContract):
    """The same contract on a three-primary cluster: every multi-key step stays in one slot."""

    @pytest.fixture
    def store_factory(self, valkey_cluster_url: str) -> Iterator[StoreFactory]:
        yield from _stores(valkey_cluster_url)


def test_cluster_spreads_objects_and_keeps_each_in_one_slot(valkey_cluster_url: str) -> None:
    from redis.cluster import RedisCluster

    store = RedisStore(valkey_cluster_url, prefix=f"liquid:t:{uuid.uuid4().hex}:")
    assert isinstance(store.client, RedisCluster) and store.cluster
    assert "cluster=true" in store.url
    for i in range(60):
        write_bytes(store, f"obj/{i}", b"v" * 10)
    nodes = {store.client.get_node_from_key(f"{store.prefix}o:{{obj/{i}}}").name for i in range(60)}
    assert len(nodes) == 3, "sixty objects should land on all three primaries"
    assert [s.locator for s in store.list("obj/1")][:2] == ["obj/1", "obj/10"]
    for i in range(60):
        store.delete(f"obj/{i}")
    store.close()


def test_cluster_url_with_a_database_is_refused(valkey_cluster_url: str) -> None:
    from liquid.errors import InvalidInput

    with pytest.raises(InvalidInput, match="only database 0"):
        RedisStore(valkey_cluster_url.replace("/0?", "/3?"))


def test_url_options_and_client(redis_url: str) -> None:
    sep = "&" if "?" in redis_url else "?"
    store = open_store(f"{redis_url}{sep}prefix=liquid:t:{uuid.uuid4().hex}:&ttl=60&chunk_size=64KiB")
    assert isinstance(store, RedisStore)
    assert isinstance(store.client, redis.Redis)
    assert store.chunk_size == 64 * 1024
    write_bytes(store, "k", b"x" * 200_000)
    key = f"{store.prefix}o:{{k}}"
    assert 0 < store.client.ttl(key) <= 60
    assert read_bytes(store, "k", start=65_530, end=65_540) == b"x" * 10
    store.delete("k")
    store.close()


def test_no_temp_keys_survive_a_put(redis_url: str) -> None:
    store = RedisStore(redis_url, prefix=f"liquid:t:{uuid.uuid4().hex}:")
    write_bytes(store, "k", b"v" * 3_000_000)
    keys = sorted(k.decode() for k in store.client.scan_iter(match=store.prefix + "*"))
    assert keys == [f"{store.prefix}o:{{k}}"]
    assert store.client.ttl(keys[0]) == -1  # no ttl configured: persistent
    store.client.unlink(*keys)
    store.close()


def test_unreachable_server_is_store_error() -> None:
    store = RedisStore("redis://127.0.0.1:1/0?socket_connect_timeout=1")
    with pytest.raises(StoreError, match=re.escape("redis://127.0.0.1:1/0")):
        store.ping()
    with pytest.raises(StoreError):
        store.head("x")


def test_password_is_not_in_url() -> None:
    store = RedisStore("redis://:hunter2@127.0.0.1:1/0")
    assert "hunter2" not in store.url
