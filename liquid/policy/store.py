"""Applied policies in the catalog: versioned, with who and when; the daemon reads the newest.

The YAML is kept as written (file name → text), so a stored policy set reports problems
and explains decisions with the operator's own file names and line numbers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, text

from liquid.catalog import db
from liquid.errors import LiquidError
from liquid.events import log as events
from liquid.policy.loader import _expand, load_policy_sources
from liquid.policy.models import PolicySet

_SELECT = "SELECT version, applied_at, applied_by, source FROM policy_versions ORDER BY version DESC"


@dataclass(frozen=True, slots=True)
class AppliedPolicies:
    version: int
    applied_at: datetime
    applied_by: str | None
    policies: PolicySet
    sources: dict[str, str]

    def __repr__(self) -> str:
        return (
            f"AppliedPolicies(version={self.version}, by={self.applied_by!r}, files={sorted(self.sources)})"
        )


def read_sources(paths: Iterable[str | Path]) -> dict[str, str]:
    """File name → text for every policy file the paths name (directories expanded)."""
    return {str(p): Path(p).read_text(encoding="utf-8") for p in _expand(paths)}


class AppliedSetChanged(LiquidError):
    """The applied policy set is not the one a plan or a merge was made against."""

    type = "liquid:policy-conflict"
    status = 409


def apply_policies(
    engine: Engine,
    sources: dict[str, str],
    *,
    actor: str | None,
    clock: Callable[[], datetime],
    expect_version: int | None = None,
) -> AppliedPolicies:
    """Validate, then store as the next version. Invalid policies raise and store nothing.

    ``expect_version`` (0: none applied yet) refuses with :class:`AppliedSetChanged` when the
    newest applied version is another one, e.g. someone applied since the plan was shown.
    """
    policies = load_policy_sources(sources)
    now = clock()
    with engine.begin() as conn:
        # Serialise appliers so versions are gapless and the newest is unambiguous.
        conn.execute(text("LOCK TABLE policy_versions IN SHARE ROW EXCLUSIVE MODE"))
        version = int(
            conn.execute(text("SELECT COALESCE(max(version), 0) + 1 FROM policy_versions")).scalar_one()
        )
        if expect_version is not None and version - 1 != expect_version:
            raise AppliedSetChanged(
                f"the applied policies are at version {version - 1}, not {expect_version} as planned: "
                "plan again and review the difference",
                field="policies",
            )
        conn.execute(
            text(
                "INSERT INTO policy_versions (version, applied_at, applied_by, source, documents)"
                " VALUES (:v, :at, :by, :src, CAST(:docs AS jsonb))"
            ),
            {
                "v": version,
                "at": now,
                "by": actor,
                "src": json.dumps(sources),
                "docs": json.dumps({"documents": policies.documents()}),
            },
        )
        events.append(
            conn,
            events.NewEvent(
                events.POLICY_APPLIED, now, actor=actor, data={"version": version, "files": sorted(sources)}
            ),
        )
    return AppliedPolicies(version, now, actor, policies, sources)


def active_policies(engine: Engine) -> AppliedPolicies | None:
    """The newest applied policy set, or None if none was ever applied."""
    with db.reading(engine) as conn:
        row = conn.execute(text(f"{_SELECT} LIMIT 1")).first()
    if row is None:
        return None
    sources = json.loads(row.source)
    return AppliedPolicies(
        int(row.version), row.applied_at, row.applied_by, load_policy_sources(sources), sources
    )


def policy_version(engine: Engine, version: int) -> AppliedPolicies | None:
    """One applied version (None when there is no such version)."""
    with db.reading(engine) as conn:
        row = conn.execute(
            text("SELECT version, applied_at, applied_by, source FROM policy_versions WHERE version = :v"),
            {"v": version},
        ).first()
    if row is None:
        return None
    sources = json.loads(row.source)
    return AppliedPolicies(
        int(row.version), row.applied_at, row.applied_by, load_policy_sources(sources), sources
    )


@dataclass(frozen=True, slots=True)
class PolicyDiff:
    """What applying ``new`` over ``old`` changes, document by document (``Kind/name``)."""

    added: list[str]
    removed: list[str]
    changed: list[str]

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def render(self) -> str:
        if self.empty:
            return "policies: no documents added, removed or changed"
        lines = ["policies:"]
        lines += [f"  + {name}  (added)" for name in self.added]
        lines += [f"  - {name}  (removed)" for name in self.removed]
        lines += [f"  ~ {name}  (changed)" for name in self.changed]
        return "\n".join(lines)

    def to_json(self) -> dict[str, list[str]]:
        return {"added": self.added, "removed": self.removed, "changed": self.changed}


def diff_policies(old: PolicySet | None, new: PolicySet) -> PolicyDiff:
    """Documents added, removed and changed between two policy sets (by kind and name)."""

    def keyed(ps: PolicySet | None) -> dict[str, dict[str, object]]:
        if ps is None:
            return {}
        return {f"{d['kind']}/{d['metadata']['name']}": d for d in ps.documents()}

    a, b = keyed(old), keyed(new)
    return PolicyDiff(
        added=sorted(b.keys() - a.keys()),
        removed=sorted(a.keys() - b.keys()),
        changed=sorted(k for k in a.keys() & b.keys() if a[k] != b[k]),
    )


def unconfigured_tiers(policies: PolicySet, configured: Callable[[str], bool]) -> list[str]:
    """``file:line:column: TieringPolicy name rules[i]: ...`` for every rule whose tier has no store.

    The daemon would plan such moves and skip them at every cycle, so ``plan`` and ``apply``
    refuse the policy set (unless told to allow it) instead of letting work vanish silently.
    """
    out = []
    for policy in policies.tiering:
        for i, rule in enumerate(policy.spec.rules):
            if rule.tier == "hot" or configured(rule.tier):
                continue
            file, line, column = policies.locate("TieringPolicy", policy.name, ("spec", "rules", i, "tier"))
            where = f"{file}:{line}:{column}" if line is not None else file
            out.append(
                f"{where}: TieringPolicy {policy.name} rules[{i}]: tier {rule.tier!r} has no store in this "
                f"configuration (set tiers.{rule.tier} in liquid.yaml); the daemon would skip these moves"
            )
    return out


def history(engine: Engine, limit: int = 20) -> list[tuple[int, datetime, str | None, list[str]]]:
    """(version, applied_at, applied_by, files), newest first."""
    with db.reading(engine) as conn:
        rows = conn.execute(
            text(f"{_SELECT} LIMIT :n"),
            {"n": limit},
        ).all()
    return [(int(r.version), r.applied_at, r.applied_by, sorted(json.loads(r.source))) for r in rows]
