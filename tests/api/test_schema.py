"""schemathesis against the app's own OpenAPI over real HTTP: no 5xx, nothing outside the schema.

Every operation gets a few schema-conforming (positive) and schema-violating (negative)
requests; every response must pass schemathesis' default checks (no server error,
documented status code, content type and body schema). Bounded to a few examples per
operation so the run stays near 30 s.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.api.conftest import TenantKey

EXAMPLES = {GenerationMode.POSITIVE: 20, GenerationMode.NEGATIVE: 10}


@pytest.mark.parametrize("mode", list(EXAMPLES), ids=str)
def test_api_conforms_to_its_schema(base_url: str, tk: TenantKey, mode: GenerationMode) -> None:
    config = SchemathesisConfig.from_dict({"headers": {"Authorization": f"Bearer {tk.key}"}})
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=config)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    failures: list[str] = []
    for operation in operations:

        @settings(
            max_examples=EXAMPLES[mode],
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case: schemathesis.Case) -> None:
            # Keys have rules (no '.'/'..' segments, no control characters, ...) that the schema
            # cannot state, so a schema-valid request may rightly get a 400: that check is off.
            case.call_and_validate(
                headers={"Authorization": f"Bearer {tk.key}"}, excluded_checks=[positive_data_acceptance]
            )

        try:
            check()
        except hypothesis.errors.Unsatisfiable:
            continue  # no schema-violating request exists for this operation
        except Exception as exc:
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)


ROUTE = re.compile(r"`(GET|HEAD|PUT|POST|DELETE|PATCH) (/[^`\s\[?]*)")
#: Served but kept out of the OpenAPI document on purpose.
UNLISTED = {"GET /metrics", "GET /docs", "GET /openapi.json"}


def _shape(operation: str) -> str:
    """``GET /v1/objects/{ns}/{key}`` and ``GET /v1/objects/{namespace}/{key}`` compare equal."""
    return re.sub(r"\{[^}]*\}", "{}", operation)


def test_docs_api_md_lists_exactly_the_routes_the_api_serves(base_url: str) -> None:
    schema = httpx.get(f"{base_url}/openapi.json").json()
    served = {_shape(f"{m.upper()} {p}") for p, item in schema["paths"].items() for m in item}
    table = [
        line.split("|")[1]
        for line in (Path(__file__).parents[2] / "docs" / "api.md").read_text().splitlines()
        if line.startswith("| `")
    ]
    documented = {_shape(f"{m} {p}") for cell in table for m, p in ROUTE.findall(cell)}
    assert served - documented == set(), "routes missing from docs/api.md's table"
    assert documented - served - UNLISTED == set(), "docs/api.md lists routes the API does not serve"


def test_docs_render_offline_from_packaged_assets(base_url: str) -> None:
    page = httpx.get(f"{base_url}/docs")
    assert page.status_code == 200 and "swagger-ui" in page.text.lower()
    external = re.findall(r"(?:src|href)=[\"'](https?://[^\"']+)", page.text)
    assert external == [], f"/docs loads from the network: {external}"
    for asset in ("/docs/static/swagger-ui-bundle.js", "/docs/static/swagger-ui.css"):
        got = httpx.get(f"{base_url}{asset}")
        assert got.status_code == 200 and len(got.content) > 10_000, asset
