"""Wire a :class:`~liquid.service.LiquidService` from settings, starting embedded servers for what is unset.

Every server is replaceable by a real deployment: set ``catalog_url`` and the store
URLs (``LIQUID_CATALOG_URL``, ``LIQUID_STORES__HOT``, ``LIQUID_STORES__COLD``, ...)
and nothing embedded starts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis
from sqlalchemy import Engine

from liquid.access import AccessTracker
from liquid.catalog import db
from liquid.config import CATALOG_STORE, Settings
from liquid.hotcache import HotCache
from liquid.keyring import DataKeys, KeyringChain, MasterKeyring, MasterKeys
from liquid.redaction import PayloadRedaction
from liquid.redis_client import connect_redis
from liquid.service import LiquidService, utcnow
from liquid.shm import ShmCache
from liquid.stores import open_store
from liquid.stores.base import Store
from liquid.stores.envelope import EnvelopeStore
from liquid.stores.guard import Guard, GuardedStore
from liquid.stores.traced import TracedStore
from liquid.tracing import Tracing

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """A wired service plus the embedded servers it started (stopped by :meth:`close`)."""

    service: LiquidService
    urls: dict[str, str]
    embedded: Any = None
    _closed: bool = field(default=False, repr=False)

    def close(self, *, stop_embedded: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        self.service.close()
        if stop_embedded and self.embedded is not None:
            self.embedded.stop()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def resolve_urls(settings: Settings) -> tuple[dict[str, str], Any]:
    """Catalog and store URLs, starting the embedded stack for anything not configured.

    Returns the URL map (``catalog`` plus one entry per store name) and the embedded
    stack, or None when every server is external.
    """
    stores = dict(settings.stores)
    need_embedded = settings.catalog_url is None or any(
        name is not None and name != CATALOG_STORE and name not in stores
        for name in (settings.tiers.hot, settings.tiers.cold, settings.tiers.archive)
    )
    stack = None
    embedded_urls: dict[str, str] = {}
    if need_embedded:
        from liquid.embedded import EmbeddedStack

        stack = EmbeddedStack(settings.home)
        embedded_urls = stack.start()
    catalog_url = settings.catalog_url or embedded_urls["postgres"]
    defaults = {
        "hot": embedded_urls.get("redis"),
        "warm": catalog_url,
        "cold": embedded_urls.get("cold"),
        "archive": embedded_urls.get("archive"),
    }
    if stack is not None and settings.tiers.archive is None and settings.tiers.cold not in stores:
        # The embedded stack (``liquid up``) has an archive directory beside its cold one, so every
        # shipped policy that archives has somewhere to put the bytes instead of skipping the move.
        settings.tiers.archive = "archive"
    for tier in ("hot", "warm", "cold", "archive"):
        name = getattr(settings.tiers, tier)
        if name is None or name == CATALOG_STORE or name in stores:
            continue
        url = defaults.get(tier)
        if url is None:
            raise ValueError(f"no URL configured for store {name!r} (tier {tier})")
        stores[name] = url
    for name, url in list(stores.items()):
        if url == CATALOG_STORE:
            stores[name] = catalog_url
    return {"catalog": catalog_url, **stores}, stack


def guarded(name: str, store: Store, settings: Settings) -> GuardedStore:
    """``store`` behind a bulkhead and a circuit breaker (:mod:`liquid.stores.guard`)."""
    tiers = [t for t in ("warm", "cold", "archive") if getattr(settings.tiers, t) == name]
    r = settings.resilience
    guard = Guard(
        f"store:{name}",
        what=f"the {' and '.join(tiers) or name} tier" if tiers else f"store {name!r}",
        concurrency=r.store_concurrency,
        queue_wait=r.queue_wait,
        failures=r.breaker_failures,
        reset=r.breaker_reset,
    )
    return GuardedStore(store, guard)


def master_keys(settings: Settings) -> MasterKeyring | None:
    """The master keys when envelope encryption is on (read before anything connects: a bad key
    file fails the start at once): KMS keys, keys from the environment or a file, or both."""
    enc = settings.encryption
    if not enc.envelope:
        return None
    inline = enc.master_keys.get_secret_value() if enc.master_keys is not None else None
    if not enc.kms_keys:
        return MasterKeys.load(inline, enc.master_keys_file)
    from liquid.kms import KmsKeyring

    kms = KmsKeyring(enc.kms_keys, endpoint=enc.kms_endpoint, region=enc.kms_region)
    if inline is None and enc.master_keys_file is None:
        return kms
    return KeyringChain([kms, MasterKeys.load(inline, enc.master_keys_file)])


def envelope_stores(
    settings: Settings, masters: MasterKeyring | None, engine: Engine
) -> Callable[[str, Store], Store]:
    """Wraps the stores of ``encryption.tiers`` in :class:`EnvelopeStore` (the identity when off)."""
    if masters is None:
        return lambda name, store: store
    keys = DataKeys(engine, masters)
    names = {settings.store_for(tier) for tier in settings.encryption.tiers} - {None, CATALOG_STORE}
    return lambda name, store: EnvelopeStore(store, keys) if name in names else store


def pooled_store_url(settings: Settings, urls: dict[str, str], url: str) -> str:
    """A store URL, told about the catalog's pooler when the store lives in the catalog database."""
    if settings.catalog_pooler == "none" or url != urls["catalog"]:
        return url
    return url + ("&" if "?" in url else "?") + f"pooler={settings.catalog_pooler}"


def open_runtime(
    settings: Settings,
    *,
    migrate: bool = True,
    clock: Callable[[], datetime] = utcnow,
    tracing: Tracing | None = None,
) -> Runtime:
    """Open the catalog (migrating it unless told not to), the stores and the hot cache.

    ``tracing`` replaces the one ``settings.tracing`` configures (tests: an in-memory exporter).
    """
    tracing = tracing or Tracing.from_settings(settings.tracing)
    masters = master_keys(settings)
    redaction = PayloadRedaction.from_settings(settings)  # a bad hook fails before anything connects
    urls, stack = resolve_urls(settings)
    engine = db.make_engine(urls["catalog"], pooler=settings.catalog_pooler)
    if migrate:
        db.upgrade(engine)
    hot_name = settings.tiers.hot
    hot = access = None
    if hot_name is not None:
        # One client for the cache and the tracker, so a hot read and its access record share a round trip.
        # Short timeouts: the hot tier is a cache, and a slow answer is worse than a miss.
        r = settings.resilience
        client = connect_redis(
            urls[hot_name], socket_timeout=r.hot_timeout, socket_connect_timeout=r.hot_timeout
        )
        if settings.hot.enabled:
            hot = HotCache(
                client,
                ttl=settings.hot.ttl,
                max_object_size=settings.hot.max_object_size,
                breaker_reset=r.breaker_reset,
                # The key every process on this catalog seals and checks copies with.
                key=db.secret(engine, "hot_copy_key"),
            )
        if settings.access.enabled:
            try:
                access = AccessTracker(
                    client,
                    half_life=settings.access.half_life,
                    clock=clock,
                    correlation=settings.access.correlation_window,
                    # The system clock's epoch seconds without a datetime per read (a hot read's cost).
                    timer=time.time if clock is utcnow else None,
                )
                access.start()
            except redis.RedisError as exc:
                log.warning("access tracking off: Redis at %s unreachable (%s)", hot_name, exc)
    encrypt = envelope_stores(settings, masters, engine)
    durable: dict[str, Store] = {
        name: guarded(name, encrypt(name, open_store(pooled_store_url(settings, urls, url))), settings)
        for name, url in urls.items()
        if name not in ("catalog", hot_name)
    }
    if tracing.enabled:
        durable = {name: TracedStore(store, tracing, name=name) for name, store in durable.items()}
    shm = ShmCache.from_settings(settings.shm, node_id=settings.node_id) if settings.shm.enabled else None
    service = LiquidService(
        settings,
        engine=engine,
        stores=durable,
        hot=hot,
        access=access,
        shm=shm,
        clock=clock,
        tracing=tracing,
        redaction=redaction,
    )
    return Runtime(service=service, urls=urls, embedded=stack)
