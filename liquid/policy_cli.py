"""``liquid policy …``: validate policy files, print the JSON Schema, import S3 lifecycle rules.

A thin layer: every command calls :mod:`liquid.policy` and prints the result; ``liquid.cli``
mounts :data:`policy_app` as ``liquid policy`` (with plan, apply, show, diff and rollback).
It lives outside the ``liquid.policy`` package, and imports it inside each command, so that
``liquid --help`` starts without building the policy format's pydantic models.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.text import Text

from liquid.errors import PolicyError

if TYPE_CHECKING:
    from liquid.policy.problems import Problem

policy_app = typer.Typer(
    name="policy",
    help="Validate policy files, print their JSON Schema, import S3 lifecycle rules.",
    no_args_is_help=True,
    add_completion=False,
)

_STYLES = {"error": "bold red", "warning": "yellow", "note": "cyan"}


def _console(*, stderr: bool = False) -> Console:
    # Created per call so test runners that swap sys.stdout capture the output; no
    # wrapping, so each problem stays on one line for editors and grep.
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _print_problem(console: Console, problem: Problem) -> None:
    # Errors print exactly as the brief format (file:line:column: path: message; allowed: ...);
    # warnings and notes carry their severity after the location.
    console.print(Text(str(problem), style=_STYLES[problem.severity]))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@policy_app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Policy YAML files or directories of them.")],
    facts: Annotated[
        Path | None,
        typer.Option(
            "--facts",
            help="JSON catalog facts (bytes, heldBytes, pinnedBytes per tier) to check budgets against.",
        ),
    ] = None,
) -> None:
    """Check policy files: every error with file:line:column and field path; exit 1 on errors."""
    from liquid.policy.checks import CatalogSummary, budget_warnings
    from liquid.policy.loader import load_policies
    from liquid.policy.problems import PolicyValidationError

    out = _console()
    try:
        policies = load_policies(files)
    except PolicyValidationError as exc:
        for problem in exc.problems:
            _print_problem(out, problem)
        errors = sum(p.severity == "error" for p in exc.problems)
        out.print(Text(f"{_plural(errors, 'error')} in {_plural(len(files), 'file')}", style="bold red"))
        raise typer.Exit(1) from None
    found = [*policies.notes, *policies.warnings]
    if facts is not None:
        try:
            summary = CatalogSummary.from_dict(json.loads(facts.read_text(encoding="utf-8")))
        except (OSError, ValueError, AttributeError, PolicyError) as exc:
            out.print(Text(f"{facts}: cannot read catalog facts: {exc}", style="bold red"))
            raise typer.Exit(1) from None
        found += budget_warnings(policies, summary)
    for problem in found:
        _print_problem(out, problem)
    warnings = sum(p.severity == "warning" for p in found)
    counts = (
        f"{_plural(len(policies.tiering), 'tiering policy')}, {_plural(len(policies.budgets), 'budget')}, "
        f"{_plural(len(policies.cost_models), 'cost model')}"
    ).replace("policys", "policies")
    out.print(Text(f"valid: {counts}; {_plural(warnings, 'warning')}", style="green"))


@policy_app.command()
def schema() -> None:
    """Print the JSON Schema of policy documents (the content of policies/schema.json)."""
    from liquid.policy.schema import schema_text

    sys.stdout.write(schema_text())


@policy_app.command("import-s3")
def import_s3(
    file: Annotated[
        Path, typer.Argument(help="S3 Lifecycle configuration JSON (get-bucket-lifecycle-configuration).")
    ],
    tenant: Annotated[str | None, typer.Option(help="Limit the imported policies to this tenant.")] = None,
    namespace: Annotated[
        str | None, typer.Option(help="Limit them to this namespace (the S3 bucket).")
    ] = None,
    all_tenants: Annotated[
        bool,
        typer.Option(
            "--all-tenants", help="No tenant or namespace: govern matching objects of every tenant."
        ),
    ] = False,
    lossy: Annotated[
        bool, typer.Option("--lossy", help="Import even what would not behave exactly as on S3 (listed).")
    ] = False,
) -> None:
    """Print Liquid policies that behave like an S3 Lifecycle configuration.

    Anything S3 would reject is an error with its JSON path; anything Liquid cannot express
    exactly fails with every loss listed, unless --lossy. A scope is required: --tenant
    and/or --namespace, or --all-tenants.
    """
    from liquid.policy.s3import import import_s3_lifecycle

    err = _console(stderr=True)
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
        result = import_s3_lifecycle(
            config, tenant=tenant, namespace=namespace, all_tenants=all_tenants, lossy=lossy
        )
    except (OSError, ValueError) as exc:
        detail = exc.detail if isinstance(exc, PolicyError) else str(exc)
        if isinstance(exc, PolicyError) and exc.field == "scope":
            detail = "a scope is required: --tenant and/or --namespace (the bucket), or --all-tenants"
        err.print(Text(f"{file}: {detail}", style="bold red"))
        raise typer.Exit(1) from None
    sys.stdout.write(result.yaml(source=file.name))
    err.print(Text(f"scope: {result.scope}", style="cyan"))
    for loss in result.losses:
        err.print(Text(f"loss (--lossy): {loss}", style="yellow"))
    for note in result.notes:
        err.print(Text(f"note: {note}", style="cyan"))
