"""The demo workload `make run` loads: a few workflow executions' results, artifacts and documents."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from sqlalchemy import text as sql

from liquid.catalog import partitions
from liquid.refs import RefInfo
from liquid.service import LiquidService

DEMO_TENANT = "demo"
DEMO_POLICY = Path(__file__).resolve().parent.parent / "policies" / "demo.yaml"


def load_demo(service: LiquidService, *, executions: int = 5, seed: int = 7) -> dict[str, Any]:
    """Write the demo objects once: a home that already holds the demo tenant's objects keeps them
    (``seeded`` is False then, and nothing is written)."""
    rnd = random.Random(seed)
    if not service.tenancy.tenant_exists(DEMO_TENANT):
        service.tenancy.create_tenant(DEMO_TENANT, display_name="Demo tenant", actor="demo")
    with service.engine.connect() as conn:
        count, first = conn.execute(
            sql(
                "SELECT count(*), min(namespace || '/' || key) FILTER (WHERE namespace = 'results') "
                "FROM objects WHERE tenant_id = :t AND state = 'live' AND "
                + partitions.tenant_rows(DEMO_TENANT)
            ),
            {"t": DEMO_TENANT},
        ).one()
    if count:
        ns, _, key = str(first or "results/exec-000/extract.json").partition("/")
        return {"objects": int(count), "inline_ref": f"liquid://{DEMO_TENANT}/{ns}/{key}@1", "seeded": False}
    refs: dict[str, list[RefInfo]] = {"results": [], "artifacts": [], "kb": []}
    for e in range(executions):
        execution = f"exec-{e:03d}"
        for step in ("extract", "transform", "score"):
            body = json.dumps(
                {
                    "execution": execution,
                    "step": step,
                    "rows": [rnd.random() for _ in range(rnd.randint(10, 3000))],
                }
            ).encode()
            refs["results"].append(
                service.put(
                    DEMO_TENANT,
                    "results",
                    f"{execution}/{step}.json",
                    body,
                    content_type="application/json",
                    execution_id=execution,
                    scope="execution",
                    actor="demo",
                )
            )
        service.finish_execution(DEMO_TENANT, execution, actor="demo")
    model = bytes(rnd.getrandbits(8) for _ in range(4096)) * 512  # 2 MiB: born cold
    refs["artifacts"].append(service.put(DEMO_TENANT, "artifacts", "model.bin", model, actor="demo"))
    for i in range(8):
        text = f"Document {i}: " + " ".join(
            rnd.choice(["liquid", "data", "tier", "cold", "warm"]) for _ in range(4000)
        )
        refs["kb"].append(
            service.put(
                DEMO_TENANT, "kb", f"docs/{i}.txt", text.encode(), content_type="text/plain", actor="demo"
            )
        )
    # Read some results a few times so scores differ and the planner has something to decide.
    for info in refs["results"][:4]:
        for _ in range(rnd.randint(2, 6)):
            service.get(DEMO_TENANT, info.ref)
    return {
        "objects": sum(len(v) for v in refs.values()),
        "inline_ref": refs["results"][0].uri,
        "cold_ref": refs["artifacts"][0].uri,
        "seeded": True,
    }
