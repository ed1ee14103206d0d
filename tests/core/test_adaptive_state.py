"""The hot rank's adaptive state: the leader saves it in Redis, explain shows it, a new leader resumes."""

from __future__ import annotations

import json
import math

from daemon.tiering import Metrics
from liquid.hotcache import HotCache
from liquid.policy.loader import load_policy_text
from liquid.policy.store import apply_policies
from liquid.redis_keys import HOT_ADAPTIVE
from liquid.refs import ResultRef
from liquid.service import LiquidService
from liquid.tiering.engine import TieringEngine, catalog_engine
from liquid.tiering.explain import explain
from liquid.tiering.planner import Planner
from liquid.tiering.rows import CatalogRows

from .conftest import ServiceFactory


def _policy(tenant: str) -> str:
    return f"""
apiVersion: liquid/v1
kind: TieringPolicy
metadata: {{name: hot-{tenant}}}
spec:
  selector: {{tenants: [{tenant}]}}
  rules:
    - {{tier: hot, promoteAbove: 1/h}}
    - {{tier: warm}}
"""


def test_the_leader_saves_the_chosen_half_life_explain_shows_it_and_a_new_leader_resumes(
    make_service: ServiceFactory, tenant: str
) -> None:
    service = make_service(planner={"adaptive": True})
    hot = service.hot
    assert hot is not None
    apply_policies(service.engine, {"p.yaml": _policy(tenant)}, actor="test", clock=service.clock)
    r = service.put(tenant, "ns", "k", b"x" * 1000).ref
    first = catalog_engine(service)
    first._restored = True  # whatever an earlier test saved is not this leader's business
    adaptive = first.planner.adaptive
    # As if the simulations chose the shortest half-life, with residents kept harder.
    adaptive.current, adaptive.sticky, adaptive.changed = 0, 1, True
    assert first.cycle() is not None
    saved = json.loads(hot.client.get(HOT_ADAPTIVE))
    assert saved["half_life_s"] == adaptive.candidates[0] < adaptive.base == saved["tracker_half_life_s"]
    assert saved["switches"] == 0 and len(saved["byte_hit_ratio"]) == len(adaptive.candidates)
    assert saved["hysteresis"] == 2.0 > service.settings.planner.hysteresis == 1.25
    assert sorted(saved["by_hysteresis"]) == ["1.25", "2"]

    second = catalog_engine(service)
    assert second.planner.adaptive.current != 0 and second.planner.adaptive.bonus == 1.25
    second.cycle()
    assert second.planner.adaptive.half_life == adaptive.candidates[0]
    assert second.planner.adaptive.bonus == 2.0
    assert second.state is not None and second.state.hot.bonus == math.log(2.0)  # the tier keeps it

    now = service.clock()
    row = CatalogRows(service.engine, half_life=service.settings.access.half_life).row(r, now)
    assert row is not None
    out = explain(Planner(service.settings), load_policy_text(_policy(tenant)), row, now, hot=hot)
    shown = out["hot"]["adaptive"]
    assert shown["half_life_s"] == adaptive.candidates[0] and shown["hysteresis"] == 2.0
    assert shown["source"].startswith("chosen by the leader")
    assert shown["ranked_by"] == "recency (its last read)"  # never read: only recency can order it

    hot.client.delete(HOT_ADAPTIVE)
    shown = explain(Planner(service.settings), load_policy_text(_policy(tenant)), row, now, hot=hot)["hot"]
    assert shown["adaptive"]["half_life_s"] == service.settings.access.half_life
    assert shown["adaptive"]["source"] == "the tracker's (no leader has chosen one yet)"
    assert "LRFU's exact score" in shown["adaptive"]["score_from"]
    off = make_service(planner={"adaptive": False})  # the fixed rank
    shown = explain(Planner(off.settings), load_policy_text(_policy(tenant)), row, now, hot=hot)["hot"]
    assert shown["adaptive"]["source"] == "the tracker's (adaptive off)"
    assert "score_from" not in shown["adaptive"]  # the tracker's rate alone
    default = make_service()  # the default ranks adaptively
    shown = explain(Planner(default.settings), load_policy_text(_policy(tenant)), row, now, hot=hot)["hot"]
    assert shown["adaptive"]["source"] == "the tracker's (no leader has chosen one yet)"
    assert "LRFU's exact score" in shown["adaptive"]["score_from"]


def _first_leader(service: LiquidService, tenant: str) -> tuple[HotCache, ResultRef, TieringEngine]:
    """A leader on a clean slate (no saved adaptive state), the tenant's policy applied and one object."""
    hot = service.hot
    assert hot is not None
    hot.client.delete(HOT_ADAPTIVE)
    apply_policies(service.engine, {"p.yaml": _policy(tenant)}, actor="test", clock=service.clock)
    r = service.put(tenant, "ns", "k", b"x" * 1000).ref
    first = catalog_engine(service)
    first._restored = True  # whatever an earlier test saved is not this leader's business
    return hot, r, first


def test_the_leader_saves_its_window_share_and_read_clock_explain_shows_them_and_a_new_leader_resumes(
    make_service: ServiceFactory, tenant: str
) -> None:
    service = make_service(planner={"read_clock": True, "adaptive_window": True})
    hot, r, first = _first_leader(service, tenant)
    window = first.planner.window
    window.share, window.changed = 0.3, True  # as if the hill climbing had reached 30%
    assert first.cycle() is not None
    saved = json.loads(hot.client.get(HOT_ADAPTIVE))
    assert saved["window"]["window_share"] == 0.3
    assert saved["read_clock"]["half_life_budgets"] == 2.0
    assert "half_life_s" not in saved  # the half-life simulations are off

    second = catalog_engine(service)
    assert second.planner.window.share == 0.0  # planner.hot_window, until it resumes
    second.cycle()
    assert second.planner.window.share == 0.3
    assert second.state is not None and second.state.hot.window_fraction == 0.3

    now = service.clock()
    row = CatalogRows(service.engine, half_life=service.settings.access.half_life).row(r, now)
    assert row is not None
    out = explain(Planner(service.settings), load_policy_text(_policy(tenant)), row, now, hot=hot)
    shown = out["hot"]["adaptive"]
    assert shown["window"]["window_share"] == 0.3
    assert shown["window"]["source"] == "the leader's hill climbing on the hot byte hit ratio"
    assert shown["ranked_by"] == "the tracker's count, forward-decayed in hot budgets read"
    assert shown["read_clock"]["half_life_budgets"] == 2.0
    assert shown["read_clock"]["leader"]["half_life_budgets"] == 2.0
    hot.client.delete(HOT_ADAPTIVE)
    off = make_service()
    shown = explain(Planner(off.settings), load_policy_text(_policy(tenant)), row, now, hot=hot)["hot"]
    assert shown["adaptive"]["window"]["source"] == "planner.hot_window (adaptive_window off)"
    assert "read_clock" not in shown["adaptive"]


def test_the_leader_saves_the_read_clock_half_life_it_chose_explain_shows_it_and_a_new_leader_resumes(
    make_service: ServiceFactory, tenant: str
) -> None:
    service = make_service(planner={"read_clock": True, "read_adaptive": True})
    hot, r, first = _first_leader(service, tenant)
    chosen = first.planner.read_adaptive
    assert chosen.enabled and chosen.half_life == 2.0  # planner.read_half_life, to start
    chosen.current, chosen.changed = chosen.candidates.index(8.0), True  # as if it had chosen 8
    assert first.cycle() is not None
    saved = json.loads(hot.client.get(HOT_ADAPTIVE))
    assert saved["read_clock"]["adaptive"]["half_life_budgets"] == 8.0
    assert saved["read_clock"]["adaptive"]["configured_half_life_budgets"] == 2.0

    second = catalog_engine(service)
    assert second.planner.read_adaptive.half_life == 2.0  # until it resumes
    second.cycle()
    assert second.planner.read_adaptive.half_life == 8.0

    now = service.clock()
    row = CatalogRows(service.engine, half_life=service.settings.access.half_life).row(r, now)
    assert row is not None
    shown = explain(Planner(service.settings), load_policy_text(_policy(tenant)), row, now, hot=hot)
    clock = shown["hot"]["adaptive"]["read_clock"]
    assert clock["half_life_budgets"] == 8.0
    assert clock["source"] == "chosen by the leader's miniature simulations"
    # The last candidate is the tracker's wall-clock rank (JSON has no infinity).
    assert clock["leader"]["adaptive"]["candidates_budgets"][-2:] == [16.0, "tracker"]
    hot.client.delete(HOT_ADAPTIVE)
    shown = explain(Planner(service.settings), load_policy_text(_policy(tenant)), row, now, hot=hot)
    clock = shown["hot"]["adaptive"]["read_clock"]
    assert clock["half_life_budgets"] == 2.0
    assert clock["source"] == "planner.read_half_life (no leader has chosen one yet)"
    off = make_service(planner={"read_clock": True})
    shown = explain(Planner(off.settings), load_policy_text(_policy(tenant)), row, now, hot=hot)
    assert shown["hot"]["adaptive"]["read_clock"]["source"] == "planner.read_half_life (read_adaptive off)"


def test_the_daemon_exports_the_half_life_of_the_rank_in_use_and_nan_for_the_other(
    make_service: ServiceFactory,
) -> None:
    def gauges(p: Planner) -> tuple[float, float]:
        m = Metrics()
        m.observe_rank(p)
        return m.hot_half_life._value.get(), m.hot_read_half_life._value.get()

    fresh = Metrics()  # before the first cycle: no half-life yet, not a half-life of 0
    assert math.isnan(fresh.hot_half_life._value.get()) and math.isnan(fresh.hot_read_half_life._value.get())
    p = Planner(make_service().settings)  # the default: the adaptive wall-clock rank
    seconds, budgets = gauges(p)
    assert seconds == p.adaptive.half_life == p.settings.access.half_life and math.isnan(budgets)
    p.adaptive.current = 0  # as if its simulations had chosen the shortest
    assert gauges(p)[0] == p.adaptive.candidates[0] < p.settings.access.half_life
    m = Metrics()
    assert math.isnan(m.hot_hysteresis._value.get())
    m.observe_rank(p)
    assert m.hot_hysteresis._value.get() == 1.25  # planner.hysteresis
    p.adaptive.sticky = 1  # residents kept harder
    m.observe_rank(p)
    assert m.hot_hysteresis._value.get() == 2.0

    seconds, budgets = gauges(
        Planner(make_service(planner={"read_clock": True, "read_half_life": 3.0}).settings)
    )
    assert budgets == 3.0 and math.isnan(seconds)  # the tracker's half-life is not what ranks
    p = Planner(make_service(planner={"read_clock": True, "read_adaptive": True}).settings)
    seconds, budgets = gauges(p)
    assert budgets == p.read_adaptive.half_life == 2.0 and math.isnan(seconds)
    p.read_adaptive.current = len(p.read_adaptive.candidates) - 1  # the tracker's wall-clock rank
    seconds, budgets = gauges(p)
    assert math.isinf(budgets) and seconds == p.settings.access.half_life
