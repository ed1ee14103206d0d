"""Every dashboard page under Streamlit's AppTest, against the API on a seeded catalog.

The numbers a page shows must be the API's: tier bytes and costs, budget use, move counts,
reads and writes, and the dry-run plan of ``liquid policy plan``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from dashboard.data import DURABLE_TIERS, TierReads, format_bytes, format_cost
from liquid.cli import app as cli
from tests.dashboard.conftest import OTHER, PAGES, PROPOSAL, TENANT, Dash

#: Every AppTest of the running test, whose API clients are closed at its end.
_OPENED: list[AppTest] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _OPENED:
        at = _OPENED.pop()
        if "liquid_data" in at.session_state:
            at.session_state["liquid_data"].close()


def app(name: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=90)
    _OPENED.append(at)
    return at


def open_page(name: str, tenant: str | None = TENANT) -> AppTest:
    at = app(name)
    at.run()
    if tenant is not None:
        at.selectbox(key="tenant").set_value(tenant).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def api(dash: Dash, path: str, **params: Any) -> Any:
    r = httpx.get(
        f"{dash.base_url}{path}", params=params, headers={"Authorization": f"Bearer {dash.admin_key}"}
    )
    assert r.status_code == 200, r.text
    return r.json()


def post(dash: Dash, path: str, body: dict[str, Any]) -> Any:
    r = httpx.post(f"{dash.base_url}{path}", json=body, headers={"Authorization": f"Bearer {dash.admin_key}"})
    assert r.status_code == 200, r.text
    return r.json()


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def frame(at: AppTest, *columns: str) -> pd.DataFrame:
    """The one dataframe on the page with these columns."""
    found = [d.value for d in at.dataframe if set(columns) <= set(d.value.columns)]
    assert len(found) == 1, [list(d.value.columns) for d in at.dataframe]
    return found[0]


def _read_through_the_api(dash: Dash, times: int) -> None:
    for i in range(times):
        uri = f"liquid://{TENANT}/results/run-{1 + i % 4}/out.bin@1"
        r = httpx.get(
            f"{dash.base_url}/v1/refs/{quote(uri, safe='')}",
            headers={"Authorization": f"Bearer {dash.admin_key}", "X-Liquid-Tenant": TENANT},
        )
        assert r.status_code == 200, r.text


def _served(dash: Dash) -> TierReads:
    text = httpx.get(f"{dash.base_url}/metrics").text
    reads: dict[str, int] = {}
    size: dict[str, int] = {}
    for line in text.splitlines():
        for name, into in (("liquid_tier_reads_total", reads), ("liquid_tier_read_bytes_total", size)):
            if line.startswith(name + "{"):
                source = line.split('source="')[1].split('"')[0]
                into[source] = int(float(line.rsplit(" ", 1)[1]))
    return TierReads(reads, size)


def test_overview_shows_the_apis_tier_bytes_costs_and_budget_use(dash_env: Dash) -> None:
    _read_through_the_api(dash_env, 6)
    at = open_page("overview")
    cost = {r["tier"]: r for r in api(dash_env, "/v1/stats/cost", tenant=TENANT)["rows"]}
    assert cost["warm"]["bytes"] > 0 and cost["cold"]["bytes"] > 0  # the seed moved logs cold
    shown = metrics(at)
    for tier in DURABLE_TIERS:
        assert shown[f"{tier} tier"] == format_bytes(cost.get(tier, {"bytes": 0})["bytes"])
    assert shown["total monthly cost"] == format_cost(sum(r["monthly_cost"] for r in cost.values()))
    tiers = frame(at, "tier", "objects", "bytes").set_index("tier")
    for tier, row in cost.items():
        assert tiers.loc[tier, "bytes"] == row["bytes"]
        assert tiers.loc[tier, "objects"] == row["objects"]
        assert tiers.loc[tier, "monthly cost"] == format_cost(row["monthly_cost"])

    plan = post(dash_env, "/v1/policies:plan", {})
    (budget,) = [b for b in plan["budgets"] if b["budget"] == "acme-cap"]
    use = frame(at, "budget", "limit bytes").set_index("budget")
    assert use.loc["acme-cap", "bytes"] == budget["bytes_before"] == cost["warm"]["bytes"]
    assert use.loc["acme-cap", "limit bytes"] == budget["limit_bytes"] == 1024 * 1024
    assert use.loc["acme-cap", "use"] == f"{budget['bytes_before'] / budget['limit_bytes']:.0%} of bytes"

    status = api(dash_env, "/v1/tiering/status")
    assert shown["move queue depth"] == str(status["queue_depth"])

    served = _served(dash_env)
    assert sum(served.reads.values()) >= 6 and served.object_hit_ratio is not None
    assert shown["hot hit ratio (objects)"] == f"{served.object_hit_ratio:.1%}"
    assert shown["hot hit ratio (bytes)"] == f"{served.byte_hit_ratio:.1%}"
    # A later visit after more reads draws the ratio of the reads in between.
    _read_through_the_api(dash_env, 4)
    again = open_page("overview")
    specs = [c.proto.spec for c in again.get("vega_lite_chart")]
    assert any("hot hit ratio" in spec for spec in specs)


def test_the_tenant_filter_changes_the_numbers(dash_env: Dash) -> None:
    other = metrics(open_page("overview", OTHER))
    cost = {r["tier"]: r for r in api(dash_env, "/v1/stats/cost", tenant=OTHER)["rows"]}
    assert other["warm tier"] == format_bytes(cost["warm"]["bytes"]) == format_bytes(300 * 1024)
    everyone = metrics(open_page("overview", None))
    total = sum(r["monthly_cost"] for r in api(dash_env, "/v1/stats/cost")["rows"])
    assert everyone["total monthly cost"] == format_cost(total)
    assert everyone["total monthly cost"] != other["total monthly cost"]


def test_usage_shows_the_apis_reads_writes_top_objects_and_idle_data(dash_env: Dash) -> None:
    at = open_page("usage")
    usage = api(dash_env, "/v1/stats/usage", tenant=TENANT)["rows"]
    shown = metrics(at)
    assert shown["writes"] == str(sum(r["writes"] for r in usage)) == "8"
    assert shown["reads"] == str(sum(r["reads"] for r in usage))
    assert shown["bytes written"] == format_bytes(sum(r["bytes_written"] for r in usage))
    top = api(dash_env, "/v1/stats/top-objects", tenant=TENANT, limit=20)["rows"]
    table = frame(at, "key", "reads")
    assert table["reads"].tolist() == [r["reads"] for r in top]
    assert table["key"].tolist() == [r["key"] for r in top]
    idle = frame(at, "idle for", "bytes")
    # Nothing is 30 days old: every idle row is empty, and says so in bytes.
    assert idle["bytes"].sum() == 0
    assert len(at.get("vega_lite_chart")) >= 2  # reads/writes over time, the heatmap


def test_movements_shows_the_apis_move_counts(dash_env: Dash) -> None:
    at = open_page("movements")
    moves = api(dash_env, "/v1/stats/moves", tenant=TENANT)["rows"]
    assert sum(r["moves"] for r in moves) == 3  # the three logs went warm → cold
    shown = metrics(at)
    assert shown["moves"] == "3"
    assert shown["bytes moved"] == format_bytes(sum(r["bytes"] for r in moves))
    routes = frame(at, "route", "moves").set_index("route")
    assert routes.loc["warm → cold", "moves"] == 3
    status = api(dash_env, "/v1/tiering/status")
    assert shown["open journal rows"] == str(status["queue_depth"])


def test_policies_plan_shows_the_same_numbers_as_the_cli(
    dash_env: Dash, cli_env: dict[str, str], tmp_path: Path
) -> None:
    at = open_page("policies", None)
    applied = api(dash_env, "/v1/policies")
    assert at.subheader[0].value == f"Applied: version {applied['version']}"
    assert any("tests" in m.value for m in at.markdown)  # who applied it

    at.text_area(key="pasted").input(PROPOSAL)
    at.radio(key="which").set_value("the pasted or uploaded policy")
    at.button(key="plan").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    shown = frame(at, "tier", "bytes before", "bytes after").set_index("tier")

    f = tmp_path / "proposal.yaml"
    f.write_text(PROPOSAL)
    out = CliRunner().invoke(cli, ["policy", "plan", str(f), "--output", "json"], env=cli_env)
    assert out.exit_code == 0, out.output
    plan = json.loads(out.stdout)
    for tier, row in plan["tiers"].items():
        assert shown.loc[tier, "bytes before"] == row["bytes_before"], tier
        assert shown.loc[tier, "bytes after"] == row["bytes_after"], tier
        assert shown.loc[tier, "cost after"] == format_cost(row["monthly_cost_after"])
    moved = sum(m["objects"] for m in plan["moves"])
    assert moved > 0  # the proposal sends the results cold
    assert metrics(at)["moves"] == str(moved)
    budgets = frame(at, "budget", "bytes_after").set_index("budget")
    for b in plan["budgets"]:
        assert budgets.loc[b["budget"], "bytes_after"] == b["bytes_after"]


def test_a_bad_pasted_policy_is_an_error_message_not_a_traceback(dash_env: Dash) -> None:
    at = open_page("policies", None)
    at.text_area(key="pasted").input(
        "apiVersion: liquid/v1\nkind: TieringPolicy\nmetadata: {name: x}\nspec: 7\n"
    )
    at.radio(key="which").set_value("the pasted or uploaded policy")
    at.button(key="plan").click().run()
    assert not at.exception
    assert at.error and "planning the policies" in at.error[0].value


def test_ref_lookup_shows_placement_explain_and_history(dash_env: Dash) -> None:
    at = open_page("ref_lookup")
    uri = f"liquid://{TENANT}/logs/day-0.log@1"
    at.text_input(key="ref").input(uri).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    shown = metrics(at)
    assert shown["home tier"] == "cold"
    assert shown["size"] == format_bytes(64 * 1024)
    history = frame(at, "kind", "tier")
    assert {"object.created", "object.moved"} <= set(history["kind"])
    at.text_input(key="ref").input("not a ref").run()
    assert not at.exception and at.error and "not a ref" in at.error[0].value


def test_api_errors_are_messages(dash: Dash, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIQUID_DASHBOARD_API_URL", dash.base_url)
    monkeypatch.setenv("LIQUID_DASHBOARD_API_KEY", "lq_00000000_not-a-key")
    at = app("overview").run()
    assert not at.exception
    assert at.error and "operator key" in at.error[0].value
    monkeypatch.delenv("LIQUID_DASHBOARD_API_KEY")
    at = app("movements").run()
    assert not at.exception and "LIQUID_DASHBOARD_API_KEY" in at.error[0].value
