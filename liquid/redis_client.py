"""Redis clients from URLs: one server, a Redis/Valkey Cluster, or a Sentinel-managed primary.

redis-py's own support does the work; this only reads the URL::

    redis://[:password@]host:6379/0                       one server (rediss:// for TLS, unix:// too)
    redis://[:password@]host:6379/0?cluster=true          a cluster: any node, the client finds the rest
    redis+sentinel://[:password@]s1:26379,s2:26379/mymaster/0
                                                          the primary Sentinel names ``mymaster``
                                                          (failover followed by redis-py)

A cluster has only database 0. Keys Liquid touches together share a hash tag (``{...}``), so
its multi-key commands and scripts stay within one slot (see :mod:`liquid.stores.redis` and
:mod:`liquid.hotcache`).
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis.cluster import RedisCluster
from redis.connection import URL_QUERY_ARGUMENT_PARSERS
from redis.sentinel import Sentinel

from liquid.errors import InvalidInput

_TRUE = {"1", "true", "yes", "on"}
_URL_PARSERS: dict[str, Any] = dict(URL_QUERY_ARGUMENT_PARSERS)


def is_cluster_url(url: str) -> bool:
    """Whether ``url`` asks for a cluster client (``?cluster=true``)."""
    query = dict(parse_qsl(urlsplit(url).query))
    return query.get("cluster", "").lower() in _TRUE


def connect_redis(url: str, **options: Any) -> redis.Redis:
    """A client for ``url``; ``options`` (timeouts, ...) go to redis-py.

    A cluster or Sentinel client is returned under the ``redis.Redis`` type: both offer the same
    command API (GET, SET, HSET, pipelines, scripts) that Liquid uses.

    Raises:
        InvalidInput: a malformed URL, or a cluster URL naming a database other than 0.
    """
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    try:
        if parts.scheme == "redis+sentinel":
            return _sentinel(parts, query, options)
        if query.pop("cluster", "").lower() in _TRUE:
            if parts.path.strip("/") not in ("", "0"):
                raise InvalidInput(
                    f"a Redis Cluster has only database 0; the URL names {parts.path.strip('/')!r}",
                    field="url",
                )
            plain = urlunsplit((parts.scheme, parts.netloc, "", urlencode(query), ""))
            return cast(redis.Redis, RedisCluster.from_url(plain, **options))
        plain = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))
        return redis.Redis.from_url(plain, **options)
    except ValueError as exc:
        shown = urlunsplit((parts.scheme, parts.hostname or "", parts.path, "", ""))
        raise InvalidInput(f"bad Redis URL {shown!r}: {exc}", field="url") from None


def _sentinel(parts: Any, query: dict[str, str], options: dict[str, Any]) -> redis.Redis:
    hosts_part = parts.netloc.rsplit("@", 1)[-1]
    hosts = []
    for item in hosts_part.split(","):
        host, _, port = item.partition(":")
        hosts.append((host, int(port or 26379)))
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise InvalidInput(
            "a Sentinel URL names its primary: redis+sentinel://host:26379/mymaster/0", field="url"
        )
    service, db = path[0], int(path[1]) if len(path) > 1 else 0
    password = parts.password
    # Query options arrive as text; read them as redis-py reads a redis:// URL's (timeouts as floats, ...).
    options = {**options, **{k: _URL_PARSERS.get(k, str)(v) for k, v in query.items()}}
    make: Any = Sentinel  # untyped in redis-py
    sentinel = make(hosts, sentinel_kwargs={k: v for k, v in options.items() if "timeout" in k}, **options)
    return cast(redis.Redis, sentinel.master_for(service, db=db, password=password))
