"""Operator routes for the dashboard: the applied policy set, a dry-run plan, the tiering status.

Operator keys only (a tenant key gets 403): policies and the move queue span every tenant.

* ``GET /v1/policies``: the applied set (its YAML file by file, version, who applied it and
  when), the documents changed since the previous version, and the version history.
* ``POST /v1/policies:plan``: ``liquid policy plan --output json`` over HTTP. With ``sources``
  (file name → YAML) it plans those files and diffs them against the applied set; without,
  it plans the applied set. Both run :func:`liquid.tiering.engine.dry_run_plan`, the same
  code as the CLI, so the numbers are the CLI's.
* ``GET /v1/tiering/status``: the move queue (open journal rows per kind and step, the oldest
  ones), the movers' heartbeats, and the export lag.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import select

from liquid.api.routes import Ctx, run
from liquid.api.stats import Who
from liquid.catalog import db
from liquid.catalog.models import MoveJournal, MoverHeartbeat
from liquid.errors import Forbidden, InvalidInput
from liquid.events.stats import export_lag
from liquid.tenancy import Principal

router = APIRouter(prefix="/v1", tags=["operator"])

#: A pasted policy set may hold this many files, of this many characters each.
MAX_FILES = 64
MAX_SOURCE = 256 * 1024


def _operator(who: Principal, what: str) -> None:
    if not who.is_admin:
        raise Forbidden(f"{what} is for operator keys", field="Authorization")


class PlanRequest(BaseModel):
    """Policy files to plan (file name → YAML text); none plans the applied set."""

    sources: dict[str, str] | None = Field(
        default=None, description="File name → YAML text. Omit to plan the applied policies."
    )
    changes: bool = Field(default=False, description="List every changed object.")


@router.get("/policies", summary="The applied policy set, its diff to the previous version, the history")
async def applied_policies(
    ctx: Ctx, who: Who, history_limit: Annotated[int, Query(ge=1, le=1000, alias="history")] = 20
) -> dict[str, Any]:
    _operator(who, "the applied policy set")

    def work() -> dict[str, Any]:
        from liquid.policy.store import active_policies, diff_policies, history, policy_version

        engine = ctx.service.engine
        applied = active_policies(engine)
        versions = [
            {"version": v, "applied_at": at.isoformat(), "applied_by": by, "files": files}
            for v, at, by, files in history(engine, history_limit)
        ]
        if applied is None:
            return {"version": None, "history": versions}
        previous = policy_version(engine, applied.version - 1) if applied.version > 1 else None
        diff = diff_policies(previous.policies if previous else None, applied.policies)
        return {
            "version": applied.version,
            "applied_at": applied.applied_at.isoformat(),
            "applied_by": applied.applied_by,
            "sources": applied.sources,
            "previous_version": previous.version if previous else None,
            "diff": diff.to_json(),
            "history": versions,
        }

    return await run(work)


@router.post("/policies:plan", summary="Dry run (as `liquid policy plan`): moves, expirations, cost, budgets")
async def plan_policies(ctx: Ctx, who: Who, body: PlanRequest | None = None) -> dict[str, Any]:
    _operator(who, "planning policies")
    request = body or PlanRequest()
    sources = request.sources
    if sources is not None:
        if not sources:
            raise InvalidInput("sources is empty: paste at least one policy file", field="sources")
        if len(sources) > MAX_FILES:
            raise InvalidInput(f"at most {MAX_FILES} policy files, got {len(sources)}", field="sources")
        for name, text in sources.items():
            if len(text) > MAX_SOURCE:
                raise InvalidInput(
                    f"policy file {name!r} is {len(text)} characters; at most {MAX_SOURCE}",
                    field=f"sources.{name}",
                )

    def work() -> dict[str, Any]:
        from liquid.policy.loader import load_policy_sources
        from liquid.policy.store import active_policies, diff_policies, unconfigured_tiers
        from liquid.tiering.engine import dry_run_plan

        svc = ctx.service
        current = active_policies(svc.engine)
        if sources is None:
            if current is None:
                raise InvalidInput(
                    "no policies applied yet: paste policy files, or apply some with `liquid policy apply`",
                    field="sources",
                )
            policies, version = current.policies, current.version
        else:
            policies, version = load_policy_sources(sources), None
        plan = dry_run_plan(svc, policies, version)
        out = plan.to_json(changes=request.changes)
        # What the daemon would skip every cycle: the CLI refuses such files, here they are reported.
        out["skipped"] = unconfigured_tiers(
            policies,
            lambda tier: bool(svc.settings.store_for(tier)),  # type: ignore[arg-type]
        )
        if sources is not None:
            diff = diff_policies(current.policies if current else None, policies)
            out["policy_diff"] = {**diff.to_json(), "against_version": current.version if current else None}
        return out

    return await run(work)


@router.get("/tiering/status", summary="Move queue depth, the oldest pending moves, movers' heartbeats")
async def tiering_status(
    ctx: Ctx, who: Who, limit: Annotated[int, Query(ge=0, le=1000, description="Pending rows.")] = 50
) -> dict[str, Any]:
    _operator(who, "the tiering status")

    def work() -> dict[str, Any]:
        from liquid.tiering.journal import queue_counts

        engine = ctx.service.engine
        now = ctx.service.clock()
        j = MoveJournal
        pending_q = (
            select(
                j.id, j.tenant_id, j.kind, j.from_tier, j.to_tier, j.step, j.attempts, j.reason, j.created_at
            )
            .where(j.step.notin_(("done", "failed")))
            .order_by(j.id)
            .limit(limit)
        )
        with db.reading(engine) as conn:
            pending = [dict(r._mapping) for r in conn.execute(pending_q)]
            beats = conn.execute(select(MoverHeartbeat.worker_id, MoverHeartbeat.beat_at)).all()
        counts = queue_counts(engine)
        return {
            "at": now.isoformat(),
            "queue": counts,
            "queue_depth": sum(counts.values()),
            "pending": [{k: _plain(v) for k, v in row.items()} for row in pending],
            "movers": [
                {
                    "worker_id": w,
                    "beat_at": at.isoformat(),
                    "seconds_since_beat": round((now - at).total_seconds(), 1),
                }
                for w, at in beats
            ],
            "export": export_lag(engine, now),
        }

    return await run(work)


def _plain(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime) else v
