"""Usage: reads and writes over time, the access heatmap, the top objects, and the idle data's cost."""

from __future__ import annotations

from datetime import datetime

import altair as alt
import pandas as pd
import streamlit as st

from dashboard.data import format_bytes, format_cost
from dashboard.ui import attempt, empty, page

ctx = page("Usage", "Reads and writes by tenant and namespace, when data is read, and what sits idle.")
if ctx is not None:
    data, f = ctx
    usage = attempt(lambda: data.usage(f))
    if usage is not None and not usage:
        empty(
            "No reads or writes in this range.",
            "Widen the time range, pick another tenant, or write and read some objects"
            " (reads appear after the daemon's access flush, about a minute later).",
        )
    elif usage:
        frame = pd.DataFrame(usage)
        frame["where"] = frame["tenant"] + "/" + frame["namespace"]
        c1, c2, c3 = st.columns(3)
        c1.metric("writes", int(frame["writes"].sum()))
        c2.metric("reads", int(frame["reads"].sum()))
        c3.metric("bytes written", format_bytes(int(frame["bytes_written"].sum())))
        long = frame.melt(id_vars=["day", "where"], value_vars=["reads", "writes"], var_name="what")
        st.subheader("Reads and writes per day")
        st.altair_chart(
            alt.Chart(long)
            .mark_bar()
            .encode(
                x="day:T",
                y=alt.Y("sum(value):Q", title="count"),
                color="where:N",
                column=alt.Column("what:N", title=None),
                tooltip=["day", "where", "what", "value"],
            ),
        )
        st.dataframe(frame.drop(columns=["where"]), hide_index=True, key="usage")

    st.subheader("When data is read (UTC hour x day)")
    reads = attempt(lambda: data.events(f, "object.read"))
    if reads is not None and not reads:
        empty("No recorded reads in this range.", "Reads are recorded per minute by the access flush.")
    elif reads:
        hits = pd.DataFrame(
            [
                {
                    "day": datetime.fromisoformat(e["at"]).date().isoformat(),
                    "hour": datetime.fromisoformat(e["at"]).hour,
                    "reads": e["count"] or 0,
                }
                for e in reads
            ]
        )
        grid = hits.groupby(["day", "hour"], as_index=False)["reads"].sum()
        st.altair_chart(
            alt.Chart(grid)
            .mark_rect()
            .encode(
                x=alt.X("hour:O", scale=alt.Scale(domain=list(range(24)))),
                y="day:O",
                color=alt.Color("reads:Q", scale=alt.Scale(scheme="blues")),
                tooltip=["day", "hour", "reads"],
            ),
            width="stretch",
        )

    st.subheader("Top objects by reads")
    top = attempt(lambda: data.top_objects(f))
    if top is not None and not top:
        empty("Nothing was read in this range.", "Read some objects, or widen the time range.")
    elif top:
        st.dataframe(pd.DataFrame(top), hide_index=True, key="top_reads")

    st.subheader("Top objects by bytes written")
    created = attempt(lambda: data.events(f, "object.created", limit=2000))
    if created:
        big = sorted(created, key=lambda e: -(e["bytes"] or 0))[:20]
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "ref": e["ref"],
                        "tier": e["tier"],
                        "bytes": e["bytes"],
                        "size": format_bytes(e["bytes"]),
                    }
                    for e in big
                ]
            ),
            hide_index=True,
            key="top_bytes",
        )

    st.subheader("Idle data: not read for 30, 90, 180 days")
    idle = attempt(lambda: data.idle(f))
    if idle is not None and not idle:
        empty("No stored data to judge.", "Idle data appears once objects are stored.")
    elif idle:
        rows = []
        for r in idle:
            for d in (30, 90, 180):
                rows.append(
                    {
                        "tier": r["tier"],
                        "idle for": f"{d}+ days",
                        "objects": r[f"objects_{d}d"],
                        "bytes": r[f"bytes_{d}d"],
                        "size": format_bytes(r[f"bytes_{d}d"]),
                        "monthly cost": format_cost(r[f"monthly_cost_{d}d"]),
                    }
                )
        st.dataframe(pd.DataFrame(rows), hide_index=True, key="idle")
