"""The Liquid dashboard: ``liquid dashboard`` (or ``streamlit run dashboard/app.py``).

Reads the API at ``LIQUID_DASHBOARD_API_URL`` with the operator key ``LIQUID_DASHBOARD_API_KEY``.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

HERE = Path(__file__).parent / "pages"

st.set_page_config(page_title="Liquid", page_icon=":material/water_drop:", layout="wide")
pages = [
    st.Page(HERE / "overview.py", title="Overview", icon=":material/payments:", default=True),
    st.Page(HERE / "usage.py", title="Usage", icon=":material/monitoring:"),
    st.Page(HERE / "movements.py", title="Movements", icon=":material/local_shipping:"),
    st.Page(HERE / "policies.py", title="Policies", icon=":material/policy:"),
    st.Page(HERE / "ref_lookup.py", title="Ref lookup", icon=":material/search:"),
]
st.navigation(pages).run()
