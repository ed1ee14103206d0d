"""Movements: moves over time by from → to tier, bytes moved, failures, purges, the pending queue."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboard.data import format_bytes
from dashboard.ui import attempt, empty, page

ctx = page("Movements", "What the daemon moved and purged, what failed and why, and what is queued.")
if ctx is not None:
    data, f = ctx
    moves = attempt(lambda: data.moves(f))
    if moves is not None and not moves:
        empty(
            "No moves in this range.",
            "The daemon moves objects when policies say so: check the Policies page's plan,"
            " or run `liquid tier run-once`.",
        )
    elif moves:
        frame = pd.DataFrame(moves)
        frame["route"] = frame["from_tier"] + " → " + frame["to_tier"]
        c1, c2 = st.columns(2)
        c1.metric("moves", int(frame["moves"].sum()))
        c2.metric("bytes moved", format_bytes(int(frame["bytes"].sum())))
        st.altair_chart(
            alt.Chart(frame)
            .mark_bar()
            .encode(
                x="day:T",
                y=alt.Y("sum(moves):Q", title="moves"),
                color="route:N",
                tooltip=["day", "route", "moves", "bytes"],
            ),
            width="stretch",
        )
        routes = frame.groupby("route", as_index=False)[["moves", "bytes"]].sum()
        routes["size"] = routes["bytes"].map(format_bytes)
        st.dataframe(routes, hide_index=True, key="routes")

    st.subheader("Failures")
    failed = attempt(lambda: data.events(f, "object.move_failed,object.purge_failed", limit=500))
    if failed is not None and not failed:
        st.success("No move or purge gave up in this range.")
    elif failed:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "at": e["at"],
                        "kind": e["kind"],
                        "ref": e["ref"],
                        "step": e["data"].get("step"),
                        "attempts": e["data"].get("attempts"),
                        "error": e["data"].get("error"),
                    }
                    for e in failed
                ]
            ),
            hide_index=True,
            key="failures",
        )

    st.subheader("Purges (deletion receipts)")
    purged = attempt(lambda: data.events(f, "object.purged", limit=500))
    if purged is not None and not purged:
        empty(
            "No purges in this range.", "Purges follow deletes and retention rules after their grace period."
        )
    elif purged:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "at": e["at"],
                        "ref": e["ref"],
                        "tier": e["tier"],
                        "bytes": e["bytes"],
                        "reason": (e["data"] or {}).get("reason"),
                        "rule": (e["data"] or {}).get("rule"),
                    }
                    for e in purged
                ]
            ),
            hide_index=True,
            key="purges",
        )

    st.subheader("Pending queue")
    status = attempt(data.status)
    if status is not None:
        st.metric("open journal rows", status["queue_depth"])
        if status["pending"]:
            st.dataframe(pd.DataFrame(status["pending"]), hide_index=True, key="pending")
        else:
            st.success("Nothing queued: every planned move has finished.")
