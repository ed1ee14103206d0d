"""What every page shares: its reader, the sidebar filters, error and empty-state display."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import streamlit as st

from dashboard.data import (
    DURABLE_TIERS,
    DashboardData,
    DashboardError,
    DashboardSettings,
    Filters,
    HitRatioHistory,
    default_filters,
    format_bytes,
    format_cost,
)

T = TypeVar("T")


def reader() -> DashboardData:
    """This session's reader (one API client per browser session, settings from the environment)."""
    settings = DashboardSettings()
    data: DashboardData | None = st.session_state.get("liquid_data")
    if data is None or data.settings != settings:
        if data is not None:
            data.close()
        data = DashboardData(settings)
        st.session_state["liquid_data"] = data
    return data


def page(title: str, caption: str) -> tuple[DashboardData, Filters] | None:
    """Title, the sidebar filters (tenant, time range); None (with the error shown) if they are unusable."""
    st.title(title)
    st.caption(caption)
    data = reader()
    today = datetime.now(UTC).date()
    base = default_filters(today)
    with st.sidebar:
        st.caption(f"API: {data.settings.api_url}")
        picked = st.date_input(
            "Time range (UTC days)", value=(base.start, today), max_value=today, key="range"
        )
        tenants = attempt(lambda: data.tenants(base))
        options = ["all tenants", *(tenants or [])]
        chosen = st.selectbox("Tenant", options, key="tenant")
    if tenants is None:
        return None
    start, end = (picked[0], picked[-1]) if isinstance(picked, tuple) and picked else (base.start, today)
    try:
        f = Filters(None if chosen == "all tenants" else chosen, start, end + timedelta(days=1))
    except DashboardError as exc:
        st.error(str(exc))
        return None
    with st.sidebar:
        costs = attempt(lambda: data.tier_costs(f))
        if costs is not None:
            by_tier = {r["tier"]: r for r in costs}
            lines = [f"{t}: {format_bytes(by_tier.get(t, {}).get('bytes', 0))}" for t in DURABLE_TIERS]
            total = sum(r["monthly_cost"] or 0 for r in costs)
            st.caption("Stored as of the range's end: " + " · ".join(lines) + f" · {format_cost(total)}")
    return data, f


@st.cache_resource
def hit_history(api_url: str) -> HitRatioHistory:
    """One history of the hot tier's hit ratio per API, shared by every session of this server."""
    return HitRatioHistory(clock=lambda: datetime.now(UTC))


def attempt(fn: Callable[[], T]) -> T | None:
    """``fn()``; on an API failure, the message in an error box and None."""
    try:
        return fn()
    except DashboardError as exc:
        st.error(str(exc), icon=":material/warning:")
        return None


def empty(what: str, todo: str) -> None:
    """The empty state: what is missing and what to do about it."""
    st.info(f"{what} {todo}", icon=":material/info:")
