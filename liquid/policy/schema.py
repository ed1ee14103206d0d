"""JSON Schema of the policy file format, generated from the pydantic models.

``policies/schema.json`` is this output, checked in so editors can validate policy
YAML (e.g. ``# yaml-language-server: $schema=../policies/schema.json``); a test keeps
it equal to :func:`generate_schema`. Regenerate with::

    liquid policy schema > policies/schema.json
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import Field, TypeAdapter

from liquid.policy.models import Budget, CostModel, TieringPolicy

SCHEMA_ID = "https://liquid.dev/schemas/policy-v1.json"


def generate_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one policy document, any kind."""
    adapter: TypeAdapter[Any] = TypeAdapter(
        Annotated[TieringPolicy | Budget | CostModel, Field(discriminator="kind")]
    )
    body = adapter.json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Liquid policy document (apiVersion liquid/v1)",
        "description": (
            "One YAML document of a Liquid policy file: a TieringPolicy, Budget or CostModel. "
            "Files may hold several documents separated by '---'."
        ),
        **body,
    }


def schema_text() -> str:
    """The schema as the exact text of ``policies/schema.json``."""
    return json.dumps(generate_schema(), indent=2, ensure_ascii=False) + "\n"
