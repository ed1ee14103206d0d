"""Ref lookup: a ResultRef's metadata, placement, `explain`, and its placement and access history."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard.data import format_bytes
from dashboard.ui import attempt, page

ctx = page("Ref lookup", "Paste a ResultRef: where it is, why, what happens next, and what happened before.")
if ctx is not None:
    data, f = ctx
    # ?ref=liquid://... opens the page on that ref, so other pages and people can link to it.
    text = st.text_input(
        "ResultRef",
        value=st.query_params.get("ref", ""),
        placeholder="liquid://tenant/namespace/key@1",
        key="ref",
    )
    if not text.strip():
        st.info(
            "Paste a ref such as liquid://acme/results/run-7/out.json@1 (the Usage page lists the most read)."
        )
    else:
        found = attempt(lambda: data.lookup(text))
        if found is not None:
            meta, why = found["meta"], found["explain"]
            c1, c2, c3 = st.columns(3)
            c1.metric("home tier", meta["home_tier"] or "-")
            c2.metric("size", format_bytes(meta["size"]))
            c3.metric("should be in", str(why.get("should_be") or "-"))
            st.write(
                f"**Why:** {why.get('reason') or '-'}"
                f" (policy {why.get('policy') or 'none'}, rule {why.get('rule')});"
                f" **next change:** {why.get('next_change_at') or 'none scheduled'}"
            )
            st.subheader("Metadata")
            st.json(meta)
            st.subheader("Explain")
            st.json(why)
            st.subheader("History")
            if found["history"]:
                st.dataframe(
                    pd.DataFrame(
                        [
                            {
                                "at": e["at"],
                                "kind": e["kind"],
                                "tier": e["tier"],
                                "from": e["from_tier"],
                                "bytes": e["bytes"],
                                "count": e["count"],
                                "actor": e["actor"],
                            }
                            for e in found["history"]
                        ]
                    ),
                    hide_index=True,
                    key="ref_history",
                )
            else:
                st.info("No events recorded for this ref yet.")
