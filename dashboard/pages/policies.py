"""Policies: the applied set (YAML, version, who and when, diff) and the dry-run plan of pasted files."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from dashboard.data import TIERS, format_bytes, format_cost
from dashboard.ui import attempt, empty, page


def show_plan(plan: dict[str, Any]) -> None:
    """A plan as `liquid policy plan` has it: moves, expirations, cost per tier, budgets."""
    st.caption(
        f"over {plan['objects']} objects, policy version {plan['policy_version'] or 'from the pasted files'}"
    )
    c1, c2, c3 = st.columns(3)
    moved = sum(m["objects"] for m in plan["moves"])
    c1.metric("moves", moved, help=format_bytes(sum(m["bytes"] for m in plan["moves"])))
    c2.metric("expirations", plan["expirations"]["objects"], help=format_bytes(plan["expirations"]["bytes"]))
    c3.metric("legal holds", plan["legal_holds"]["objects"])
    tiers = pd.DataFrame(
        [
            {
                "tier": t,
                "bytes before": plan["tiers"][t]["bytes_before"],
                "bytes after": plan["tiers"][t]["bytes_after"],
                "size after": format_bytes(plan["tiers"][t]["bytes_after"]),
                "cost before": format_cost(plan["tiers"][t]["monthly_cost_before"]),
                "cost after": format_cost(plan["tiers"][t]["monthly_cost_after"]),
            }
            for t in TIERS
            if t in plan["tiers"]
        ]
    )
    st.dataframe(tiers, hide_index=True, key="plan_tiers")
    if plan["moves"]:
        st.dataframe(pd.DataFrame(plan["moves"]), hide_index=True, key="plan_moves")
    if plan["budgets"]:
        st.dataframe(pd.DataFrame(plan["budgets"]), hide_index=True, key="plan_budgets")
    for line in plan.get("skipped", []) + plan.get("warnings", []):
        st.warning(line)
    diff = plan.get("policy_diff")
    if diff is not None:
        st.caption(f"against applied version {diff['against_version']}")
        st.json({k: diff[k] for k in ("added", "removed", "changed")}, expanded=False)


ctx = page("Policies", "The applied policy set, and what a new one would do before you apply it.")
if ctx is not None:
    data, f = ctx
    applied = attempt(data.policies)
    if applied is not None:
        if applied["version"] is None:
            empty(
                "No policies applied yet.", "Apply some with `liquid policy apply FILE...`, then come back."
            )
        else:
            st.subheader(f"Applied: version {applied['version']}")
            st.write(f"applied {applied['applied_at']} by {applied['applied_by'] or 'unknown'}")
            diff = applied["diff"]
            st.write(
                f"since version {applied['previous_version'] or '(none)'}: "
                f"{len(diff['added'])} added, {len(diff['removed'])} removed, {len(diff['changed'])} changed"
            )
            if any(diff.values()):
                st.json(diff, expanded=False)
            for name, source in sorted(applied["sources"].items()):
                with st.expander(name, expanded=len(applied["sources"]) == 1):
                    st.code(source, language="yaml")
            if applied["history"]:
                st.dataframe(pd.DataFrame(applied["history"]), hide_index=True, key="history")

    st.subheader("Dry run")
    st.caption("The same plan as `liquid policy plan FILE` (the daemon's own rebuild, applying nothing).")
    pasted = st.text_area("Paste a policy (YAML)", key="pasted", height=180)
    uploaded = st.file_uploader("or upload policy files", type=["yaml", "yml"], accept_multiple_files=True)
    which = st.radio("Plan", ["the applied policies", "the pasted or uploaded policy"], key="which")
    if st.button("Plan", key="plan"):
        sources: dict[str, str] | None = None
        if which != "the applied policies":
            sources = {u.name: u.getvalue().decode("utf-8", "replace") for u in uploaded or []}
            if pasted.strip():
                sources["pasted.yaml"] = pasted
            if not sources:
                st.error("Nothing to plan: paste a policy or upload a file, or plan the applied policies.")
                sources = None
                st.stop()
        plan = attempt(lambda: data.plan(sources))
        if plan is not None:
            show_plan(plan)
