"""Overview: what the data costs, where it is, whether the budgets hold, and the daemon's health."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboard.data import DURABLE_TIERS, format_bytes, format_cost
from dashboard.ui import attempt, empty, hit_history, page


def _use(b: dict[str, object]) -> str:
    parts = []
    if isinstance(b["limit_bytes"], int) and b["limit_bytes"]:
        parts.append(f"{b['bytes_before'] / b['limit_bytes']:.0%} of bytes")  # type: ignore[operator]
    if isinstance(b["limit_monthly_cost"], float | int) and b["limit_monthly_cost"]:
        parts.append(f"{b['monthly_cost_before'] / b['limit_monthly_cost']:.0%} of cost")  # type: ignore[operator]
    return ", ".join(parts) or "no limit"


ctx = page("Overview", "Per tier: objects, bytes and monthly cost against the budgets; the daemon's health.")
if ctx is not None:
    data, f = ctx
    costs = attempt(lambda: data.tier_costs(f))
    plan = attempt(data.applied_plan)
    if costs is not None:
        by_tier = {r["tier"]: r for r in costs}
        if not costs:
            empty(
                "No stored objects yet for this tenant and range.",
                "Write some with `liquid put` or the client SDK (or run `liquid up`, which loads demo data),"
                " or widen the time range.",
            )
        total = sum(r["monthly_cost"] or 0 for r in costs)
        cols = st.columns([2] + [1] * len(DURABLE_TIERS))
        cols[0].metric(
            "total monthly cost", format_cost(total), help="Stored bytes x each tier's gb_month price"
        )
        for col, tier in zip(cols[1:], DURABLE_TIERS, strict=True):
            row = by_tier.get(tier, {"objects": 0, "bytes": 0, "monthly_cost": 0.0})
            col.metric(
                f"{tier} tier",
                format_bytes(row["bytes"]),
                help=f"{row['objects']} objects, {format_cost(row['monthly_cost'])}",
            )
            col.caption(f"{row['objects']} objects · {format_cost(row['monthly_cost'])}")

        st.subheader("Tiers against their budgets")
        frame = pd.DataFrame(
            [
                {
                    "tier": t,
                    "objects": by_tier.get(t, {}).get("objects", 0),
                    "bytes": by_tier.get(t, {}).get("bytes", 0),
                    "size": format_bytes(by_tier.get(t, {}).get("bytes", 0)),
                    "monthly cost": format_cost(by_tier.get(t, {}).get("monthly_cost", 0.0)),
                }
                for t in DURABLE_TIERS
            ]
        )
        budgets = (plan or {}).get("budgets", [])
        caps = pd.DataFrame(
            [
                {"tier": b["tier"], "cap": b["limit_bytes"], "budget": b["budget"]}
                for b in budgets
                if b["tier"] in DURABLE_TIERS
                and b["limit_bytes"] is not None
                and f.tenant in (None, b["tenant"])
            ],
            columns=["tier", "cap", "budget"],
        )
        bars = (
            alt.Chart(frame)
            .mark_bar()
            .encode(
                x=alt.X("tier:N", sort=list(DURABLE_TIERS)),
                y=alt.Y("bytes:Q", title="stored bytes"),
                tooltip=["tier", "objects", "size", "monthly cost"],
            )
        )
        ticks = (
            alt.Chart(caps)
            .mark_tick(color="red", thickness=3, size=60)
            .encode(x=alt.X("tier:N", sort=list(DURABLE_TIERS)), y="cap:Q", tooltip=["budget:N", "cap:Q"])
        )
        st.altair_chart(bars + ticks if len(caps) else bars, width="stretch")
        st.dataframe(frame, hide_index=True, key="tiers")

    if plan is None and costs is not None:
        empty("No policies applied, so no budgets to draw.", "Apply some with `liquid policy apply FILE`.")
    elif plan is not None:
        st.subheader("Budget use")
        if plan["budgets"]:
            use = pd.DataFrame(
                [
                    {
                        "budget": b["budget"],
                        "tenant": b["tenant"] or "all",
                        "tier": b["tier"] or "all",
                        "bytes": b["bytes_before"],
                        "limit bytes": b["limit_bytes"],
                        "monthly cost": b["monthly_cost_before"],
                        "limit monthly cost": b["limit_monthly_cost"],
                        "use": _use(b),
                        "holds after plan": b["ok"],
                    }
                    for b in plan["budgets"]
                ]
            )
            st.dataframe(use, hide_index=True, key="budgets")
        else:
            empty(
                "The applied policies set no budgets.", "Add a Budget document to cap a tier's bytes or cost."
            )
        skipped = plan.get("skipped", []) + plan.get("warnings", [])
        if skipped:
            st.subheader("Skipped, and why")
            for line in skipped:
                st.warning(line)

    st.subheader("Cost trend")
    trend = attempt(lambda: data.cost_trend(f))
    if trend:
        st.altair_chart(
            alt.Chart(pd.DataFrame(trend))
            .mark_line(point=True)
            .encode(x="day:T", y=alt.Y("monthly_cost:Q", title="$/month"), tooltip=["day", "monthly_cost"]),
            width="stretch",
        )

    st.subheader("Hot tier and daemon")
    reads = attempt(data.tier_reads)
    status = attempt(data.status)
    c1, c2, c3, c4, c5 = st.columns(5)
    if reads is not None:
        for col, label, ratio in (
            (c1, "hot hit ratio (objects)", reads.object_hit_ratio),
            (c2, "hot hit ratio (bytes)", reads.byte_hit_ratio),
        ):
            col.metric(
                label,
                f"{ratio:.1%}" if ratio is not None else "no reads yet",
                help="Reads served from the hot tier since the API started (liquid_tier_reads_total)",
            )
    if status is not None:
        c3.metric("move queue depth", status["queue_depth"])
        movers = status["movers"]
        freshest = min((m["seconds_since_beat"] for m in movers), default=None)
        c4.metric("daemon", "no mover running" if freshest is None else f"beat {freshest:.0f} s ago")
        lag = max((s["lag_events"] for s in status["export"]), default=None)
        c5.metric("export lag", "no sink" if lag is None else f"{lag} events")
    if reads is not None:
        points = hit_history(data.settings.api_url).add(reads)
        if points:
            ratios = pd.DataFrame(points).melt(
                id_vars=["at", "reads"], value_vars=["objects", "bytes"], var_name="hit ratio of"
            )
            st.altair_chart(
                alt.Chart(ratios)
                .mark_line(point=True)
                .encode(
                    x=alt.X("at:T", title="sampled at"),
                    y=alt.Y("value:Q", title="hot hit ratio", axis=alt.Axis(format="%")),
                    color="hit ratio of:N",
                    tooltip=["at:T", "hit ratio of:N", alt.Tooltip("value:Q", format=".1%"), "reads:Q"],
                ),
                width="stretch",
            )
        else:
            st.caption(
                "The hit ratio over time is sampled while this page is open: reload it after some"
                " reads through the API to see the trend."
            )
