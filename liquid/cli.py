"""The ``liquid`` command line.

Operator commands talk to the catalog directly with the configured (or embedded)
servers; object commands take ``--tenant`` (or ``LIQUID_TENANT``) for writes and read
the tenant from the ref for reads.

    liquid up                              # embedded servers + demo data, until Ctrl-C
    liquid tenant create acme
    liquid key create --tenant acme
    liquid put results run-7/out.json ./out.json --tenant acme
    liquid get liquid://acme/results/run-7/out.json@1 -o copy.json
    liquid ls results --tenant acme
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from liquid.errors import InvalidInput, LiquidError, ObjectNotFound
from liquid.limits import check_header_text
from liquid.policy_cli import policy_app
from liquid.refs import ResultRef, check_slug
from liquid.units import format_size, parse_duration

if TYPE_CHECKING:
    from datetime import datetime

    from liquid.bootstrap import Runtime
    from liquid.config import Settings

app = typer.Typer(
    help="Liquid: tiered storage for workflow results, documents and artifacts.", no_args_is_help=True
)
db_app = typer.Typer(help="Catalog schema.", no_args_is_help=True)
tenant_app = typer.Typer(help="Tenants.", no_args_is_help=True)
key_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(tenant_app, name="tenant")
app.add_typer(key_app, name="key")
app.add_typer(policy_app, name="policy")

console = Console()
err = Console(stderr=True)

TenantOpt = Annotated[str, typer.Option("--tenant", "-t", envvar="LIQUID_TENANT", help="Tenant to act as.")]


def load_settings() -> Settings:
    """The configuration (imported on use: pydantic-settings is a tenth of a second of start-up)."""
    from liquid.config import load_settings as load

    return load()


@contextmanager
def _runtime(*, migrate: bool = True) -> Iterator[Runtime]:
    # Imported here, not at the top: `liquid --help` and the commands that need no servers start
    # in a fraction of a second instead of importing SQLAlchemy, alembic, redis and FastAPI.
    from liquid.bootstrap import open_runtime

    rt = open_runtime(load_settings(), migrate=migrate)
    try:
        yield rt
    finally:
        rt.close()


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )


def _ref(text: str) -> ResultRef:
    return ResultRef.parse(text)


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Migrate the catalog schema (idempotent)."""
    from liquid.catalog import db

    with _runtime(migrate=False) as rt:
        db.upgrade(rt.service.engine, revision)
        console.print(f"catalog at revision [bold]{db.current_revision(rt.service.engine)}[/]")


@db_app.command("current")
def db_current() -> None:
    """Print the catalog's schema revision and the newest one this version knows."""
    from liquid.catalog import db

    with _runtime(migrate=False) as rt:
        console.print(f"current {db.current_revision(rt.service.engine)}, head {db.head_revision()}")


@tenant_app.command("create")
def tenant_create(name: str, display_name: str = typer.Option("", help="Human-readable name.")) -> None:
    """Create a tenant."""
    with _runtime() as rt:
        rt.service.tenancy.create_tenant(name, display_name=display_name, actor="cli")
    console.print(f"tenant [bold]{name}[/] created")


@tenant_app.command("ls")
def tenant_ls() -> None:
    """List tenants."""
    with _runtime() as rt:
        for name in rt.service.tenancy.list_tenants():
            console.print(name)


@key_app.command("create")
def key_create(
    tenant: Annotated[str | None, typer.Option("--tenant", "-t", help="Tenant the key acts for.")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="An operator key (no tenant).")] = False,
    name: Annotated[str, typer.Option(help="A label for the key.")] = "",
) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    with _runtime() as rt:
        key = rt.service.tenancy.create_api_key(tenant, admin=admin, name=name, actor="cli")
    console.print(key, soft_wrap=True)
    err.print("store this key now: it cannot be shown again")


@key_app.command("revoke")
def key_revoke(
    prefix: str = typer.Argument(..., help="The part after 'lq_' and before the next '_'."),
) -> None:
    """Revoke an API key."""
    with _runtime() as rt:
        rt.service.tenancy.revoke_api_key(prefix, actor="cli")
    console.print(f"key {prefix} revoked")


@app.command()
def put(
    namespace: str,
    key: str,
    path: Annotated[str, typer.Argument(help="File to upload, or '-' for standard input.")],
    tenant: TenantOpt,
    content_type: Annotated[str, typer.Option(help="MIME type.")] = "application/octet-stream",
    tag: Annotated[list[str] | None, typer.Option(help="k=v, repeatable.")] = None,
    ttl: Annotated[str | None, typer.Option(help="Expire after, e.g. 90s, 12h, 30d.")] = None,
    classification: Annotated[str | None, typer.Option()] = None,
    execution_id: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Store a file (or stdin) as a new version of NAMESPACE/KEY; prints the ResultRef JSON."""
    tags: dict[str, str] = {}
    for item in tag or []:
        k, sep, v = item.partition("=")
        if not sep:
            raise LiquidError(f"--tag {item!r} must look like key=value", field="tag")
        tags[k] = v
    seconds = _duration(ttl, "--ttl") if ttl else None
    check_header_text(content_type, "content_type")  # before opening anything
    with _runtime() as rt:
        if path == "-":
            info = rt.service.put(
                tenant,
                namespace,
                key,
                sys.stdin.buffer,
                content_type=content_type,
                tags=tags,
                ttl=seconds,  # the service bounds it (a timedelta of 10^12 days cannot even be built)
                classification=classification,
                execution_id=execution_id,
                actor="cli",
            )
        else:
            file = Path(path)
            if not file.is_file():
                raise typer.BadParameter(f"{path} is not a file", param_hint="PATH")
            size = file.stat().st_size
            with file.open("rb") as fh, _progress() as progress:
                task = progress.add_task(f"put {key}", total=size)
                info = rt.service.put(
                    tenant,
                    namespace,
                    key,
                    _tracked(fh, progress, task),
                    content_type=content_type,
                    size_hint=size,
                    tags=tags,
                    ttl=seconds,  # the service bounds it (a timedelta of 10^12 days cannot even be built)
                    classification=classification,
                    execution_id=execution_id,
                    actor="cli",
                )
    console.print_json(json.dumps(info.to_json()))


def _tracked(fh: BinaryIO, progress: Progress, task: Any) -> Iterator[bytes]:
    while chunk := fh.read(1024 * 1024):
        progress.update(task, advance=len(chunk))
        yield chunk


@app.command()
def get(
    ref: str,
    output: Annotated[str, typer.Option("--output", "-o", help="File to write, or '-' for stdout.")] = "-",
) -> None:
    """Fetch the bytes of REF (verified against its checksum)."""
    r = _ref(ref)
    with _runtime() as rt:
        reader = rt.service.open(r.tenant, r)
        if output == "-":
            for chunk in reader:
                sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            return
        target = Path(output)
        tmp = target.with_name(target.name + ".part")
        with tmp.open("wb") as fh, _progress() as progress:
            task = progress.add_task(f"get {r.key}", total=reader.length)
            for chunk in reader:
                fh.write(chunk)
                progress.update(task, advance=len(chunk))
        tmp.replace(target)  # only a verified, complete download gets the real name
    err.print(f"{format_size(reader.length)} from {reader.source} → {output}")


@app.command()
def head(ref: str) -> None:
    """Print REF's catalog entry as JSON."""
    r = _ref(ref)
    with _runtime() as rt:
        console.print_json(json.dumps(rt.service.head(r.tenant, r).to_json()))


@app.command()
def rm(ref: str) -> None:
    """Delete one version (tombstone, event, purge of its bytes)."""
    r = _ref(ref)
    with _runtime() as rt:
        rt.service.delete(r.tenant, r, actor="cli")
    console.print(f"deleted {r}")


@app.command()
def ls(
    namespace: str,
    tenant: TenantOpt,
    prefix: Annotated[str, typer.Option(help="Key prefix.")] = "",
    all_versions: Annotated[bool, typer.Option("--all-versions", help="Every live version.")] = False,
    limit: Annotated[int, typer.Option(min=1, help="Rows per page.")] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
) -> None:
    """List live objects of NAMESPACE."""
    with _runtime() as rt:
        _known_tenant(rt, tenant)
        page = rt.service.list(tenant, namespace, prefix=prefix, all_versions=all_versions, limit=limit)
    if as_json:
        for item in page.items:
            print(json.dumps(item.to_json(), ensure_ascii=False))
        return
    table = Table("ref", "size", "tier", "created", "content type")
    for item in page.items:
        table.add_row(
            str(item.ref),
            format_size(item.size),
            item.home_tier,
            item.created_at.isoformat(timespec="seconds"),
            item.content_type,
        )
    console.print(table)
    if page.next_cursor:
        err.print(f"more rows: next cursor {page.next_cursor}")


def _known_tenant(rt: Any, tenant: str) -> None:
    """A read of a tenant that does not exist is an error, not an empty answer (a typo shows)."""
    if not rt.service.tenancy.tenant_exists(check_slug(tenant, "tenant")):
        raise ObjectNotFound(f"tenant {tenant!r} does not exist", field="tenant")


def _duration(value: str, option: str) -> float:
    """Seconds from a duration option (``30d``, ``12h``), or a usage error naming the option."""
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


def _vector_arg(text: str, what: str) -> Any:
    """JSON from the argument, from stdin (``-``) or from a file (``@path``)."""
    if text.startswith("@"):
        try:
            source = Path(text[1:]).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"{what}: cannot read {text[1:]!r}: {exc}", field=what) from None
    else:
        source = sys.stdin.read() if text == "-" else text
    try:
        return json.loads(source)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{what} is not JSON: {exc}", field=what) from None


@app.command()
def search(
    vector: Annotated[str, typer.Argument(help="The query vector as a JSON array, '-' for stdin or @file.")],
    tenant: TenantOpt,
    namespace: Annotated[str | None, typer.Option(help="Search one namespace.")] = None,
    k: Annotated[int, typer.Option("-k", "--k", help="How many results.")] = 10,
    tag: Annotated[list[str] | None, typer.Option(help="key=value a result must be tagged with.")] = None,
    content_type: Annotated[str | None, typer.Option(help="Only this content type.")] = None,
    classification: Annotated[str | None, typer.Option(help="Only this classification.")] = None,
    ef_search: Annotated[
        int | None, typer.Option(help="HNSW candidates (vectors.ef_search if unset).")
    ] = None,
    index: Annotated[
        str | None, typer.Option(help="A configured vector index (vectors.default if unset).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
) -> None:
    """Nearest object versions of TENANT to VECTOR, with metadata filters."""
    from liquid.vectors import VectorFilter
    from liquid.vectors.search import VectorSearch

    tags: dict[str, str] = {}
    for item in tag or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise InvalidInput(f"--tag {item!r} must look like key=value", field="tag")
        tags[name] = value
    query = _vector_arg(vector, "vector")
    where = VectorFilter(
        namespace=namespace, tags=tags, content_type=content_type, classification=classification
    )
    with _runtime() as rt:
        _known_tenant(rt, tenant)
        vs = VectorSearch(rt.service.settings, engine=rt.service.engine, clock=rt.service.clock)
        try:
            results = vs.search(tenant, query, k=k, where=where, ef_search=ef_search, index=index)
        finally:
            vs.close()
    if as_json:
        for r in results:
            print(json.dumps(r.to_json(), ensure_ascii=False))
        return
    table = Table("score", "ref", "chunk", "size", "content type")
    for r in results:
        table.add_row(
            f"{r.score:.4f}", str(r.ref.ref), r.chunk_id or "", format_size(r.ref.size), r.ref.content_type
        )
    console.print(table)


@app.command("attach-vectors")
def attach_vectors(
    ref: str,
    embeddings: Annotated[
        str,
        typer.Argument(
            help='JSON list of vectors or {"vector", "chunk_id", "span"} objects; \'-\' or @file.'
        ),
    ],
    metric: Annotated[str | None, typer.Option(help="cosine | l2 | ip (first write of a namespace).")] = None,
    index: Annotated[
        str | None, typer.Option(help="A configured vector index (vectors.default if unset).")
    ] = None,
) -> None:
    """Attach embeddings to REF (replacing those with the same chunk id)."""
    from liquid.vectors import Embedding
    from liquid.vectors.base import check_metric
    from liquid.vectors.search import VectorSearch

    r = _ref(ref)
    items = _vector_arg(embeddings, "embeddings")
    if not isinstance(items, list):
        raise InvalidInput("embeddings must be a JSON list", field="embeddings")
    parsed = []
    for i, e in enumerate(items):
        if isinstance(e, dict):
            span = e.get("span")
            if span is not None and (not isinstance(span, list) or len(span) != 2):
                raise InvalidInput(
                    f"embeddings[{i}].span must be [start, end]", field=f"embeddings[{i}].span"
                )
            vec: Any = e.get("vector")
            parsed.append(
                Embedding(vec, chunk_id=e.get("chunk_id") or "", span=(span[0], span[1]) if span else None)
            )
        else:
            parsed.append(Embedding(e))
    with _runtime() as rt:
        vs = VectorSearch(rt.service.settings, engine=rt.service.engine, clock=rt.service.clock)
        try:
            n = vs.attach(r.tenant, r, parsed, index=index, metric=check_metric(metric) if metric else None)
        finally:
            vs.close()
    console.print(f"attached {n} embedding(s) to {r}")


def _policies(rt: Runtime, files: list[Path] | None) -> tuple[Any, int | None]:
    """The policy set to plan with: the given files, else the newest applied version."""
    from liquid.policy.loader import load_policies
    from liquid.policy.store import active_policies

    if files:
        return load_policies(files), None
    applied = active_policies(rt.service.engine)
    if applied is None:
        raise LiquidError(
            "no policies applied yet: pass policy files, or run `liquid policy apply FILE...` first",
            field="policies",
        )
    return applied.policies, applied.version


@policy_app.command("plan")
def policy_plan(
    files: Annotated[
        list[Path] | None, typer.Argument(help="Policy files; default: the applied policies.")
    ] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="text or json")] = "text",
    changes: Annotated[bool, typer.Option(help="List every changed object (json always does).")] = False,
    allow_unconfigured_tiers: Annotated[
        bool, typer.Option(help="Warn, instead of refusing, about rules whose tier has no store.")
    ] = False,
) -> None:
    """Dry run against the live catalog: moves, expirations, holds and cost per tier, against budgets."""
    from liquid.tiering.engine import dry_run_plan

    if output not in ("text", "json"):
        raise typer.BadParameter("use text or json", param_hint="--output")
    from liquid.policy.store import active_policies, diff_policies

    with _runtime() as rt:
        policies, version = _policies(rt, files)
        # Files are checked; the applied set only warned about (it is already running).
        _check_tiers(policies, rt.service.settings, allow_unconfigured_tiers or not files)
        # The daemon's own rebuild, applying nothing: the same numbers it would act on.
        plan = dry_run_plan(rt.service, policies, version)
        current = active_policies(rt.service.engine) if files else None
    diff = diff_policies(current.policies if current else None, policies) if files else None
    if output == "json":
        out = plan.to_json()
        if diff is not None:
            out["policy_diff"] = {**diff.to_json(), "against_version": current.version if current else None}
        print(json.dumps(out, indent=2))
        return
    if diff is not None:
        against = f"applied version {current.version}" if current else "nothing applied yet"
        console.print(f"against {against}:\n{diff.render()}\n", highlight=False, markup=False)
    console.print(plan.render(), highlight=False, markup=False, soft_wrap=True)
    if changes:
        for c in plan.changes:
            console.print(f"  {c.action:<10} {c.uri}  {c.from_tier} → {c.to_tier or '-'}  ({c.reason})")


@policy_app.command("simulate")
def policy_simulate(
    files: Annotated[list[Path], typer.Argument(help="Proposed policy files or directories.")],
    since: Annotated[str, typer.Option(help="How far back to replay recorded reads, e.g. 7d, 12h.")] = "30d",
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's reads (default: all).")] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="text or json")] = "text",
) -> None:
    """Replay the recorded reads through the proposed and the applied policies, side by side.

    The daemon's own engine plans both (its cycle and hot admission on the reads' clock);
    the report shows hot hit ratios, moves, archive retrievals and monthly cost, with
    Belady's MIN and the offline cost bound as the ceiling.
    """
    from liquid.policy.loader import load_policies
    from liquid.policy.store import active_policies
    from liquid.tiering.simulate import render, simulate, window

    if output not in ("text", "json"):
        raise typer.BadParameter("use text or json", param_hint="--output")
    span = _duration(since, "--since")
    if span <= 0:
        raise typer.BadParameter("must be longer than 0", param_hint="--since")
    proposed = load_policies(files)
    with _runtime() as rt:
        if tenant is not None:
            _known_tenant(rt, tenant)  # else an unknown name replays nothing and reports zeros
        applied = active_policies(rt.service.engine)
        start, end = window(span, rt.service.clock())
        with console.status("replaying recorded reads through the engine…"):
            report = simulate(
                rt.service.engine,
                rt.service.settings,
                proposed,
                applied.policies if applied is not None else None,
                since=start,
                until=end,
                tenant=tenant,
            )
    if output == "json":
        print(json.dumps(report, indent=2))
        return
    console.print(render(report), highlight=False, markup=False, soft_wrap=True)


def _check_tiers(policies: Any, settings: Any, allow: bool) -> None:
    """Refuse rules whose tier has no store (``--allow-unconfigured-tiers``: warn instead)."""
    from liquid.policy.store import unconfigured_tiers

    problems = unconfigured_tiers(policies, lambda tier: bool(settings.store_for(tier)))
    if not problems:
        return
    if allow:
        for p in problems:
            err.print(f"[yellow]warning:[/] {escape(p)}", highlight=False)
        return
    raise LiquidError(
        "\n".join(problems) + "\n(pass --allow-unconfigured-tiers to plan or apply anyway)", field="policies"
    )


def _confirm_diff(diff: Any, yes: bool, what: str) -> None:
    """Show ``diff``; go on only with ``--yes`` or a confirmation at a terminal."""
    console.print(diff.render(), highlight=False, markup=False)
    if yes or diff.empty:
        return
    if not sys.stdin.isatty():
        removed = f" (removes {', '.join(diff.removed)})" if diff.removed else ""
        raise LiquidError(
            f"refusing to {what} without confirmation{removed}: review the difference and pass --yes",
            field="--yes",
        )
    if not typer.confirm(f"{what}?", default=False):
        raise typer.Exit(1)


@policy_app.command("apply")
def policy_apply(
    files: Annotated[list[Path], typer.Argument(help="Policy files or directories.")],
    actor: Annotated[str | None, typer.Option(help="Who applies (default: $USER).")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking.")] = False,
    merge: Annotated[
        bool,
        typer.Option(
            "--merge",
            help="Keep the applied files and add or replace only these (by file name); "
            "default: these files become the whole applied set.",
        ),
    ] = False,
    expect_version: Annotated[
        int | None,
        typer.Option(
            help="Refuse unless the applied set is still this version (the one you planned against)."
        ),
    ] = None,
    allow_unconfigured_tiers: Annotated[
        bool, typer.Option(help="Warn, instead of refusing, about rules whose tier has no store.")
    ] = False,
) -> None:
    """Validate and store policies as the next version; the daemon uses them on its next cycle.

    Shows what changes against the applied set (documents added, removed, changed) and asks
    before applying unless ``--yes``.
    """
    import getpass

    from liquid.policy.loader import load_policy_sources
    from liquid.policy.store import active_policies, apply_policies, diff_policies, read_sources

    with _runtime() as rt:
        current = active_policies(rt.service.engine)
        sources = read_sources(files)
        if merge and current is not None:
            sources = {**current.sources, **sources}
        new = load_policy_sources(sources)
        _check_tiers(new, rt.service.settings, allow_unconfigured_tiers)
        diff = diff_policies(current.policies if current else None, new)
        _confirm_diff(diff, yes, "apply")
        applied = apply_policies(
            rt.service.engine,
            sources,
            actor=actor or getpass.getuser(),
            clock=rt.service.clock,
            expect_version=expect_version
            if expect_version is not None
            else (current.version if current else 0),
        )
    console.print(f"applied policy version [bold]{applied.version}[/] ({len(applied.sources)} files)")


@policy_app.command("show")
def policy_show(
    version: Annotated[int | None, typer.Argument(help="Version (default: the applied one).")] = None,
) -> None:
    """The YAML of an applied version, file by file, with who applied it and when."""
    from liquid.policy.store import active_policies, policy_version

    with _runtime() as rt:
        found = (
            active_policies(rt.service.engine)
            if version is None
            else policy_version(rt.service.engine, version)
        )
    if found is None:
        raise LiquidError(
            "no policies applied yet" if version is None else f"no policy version {version}", field="version"
        )
    at = found.applied_at.isoformat(timespec="seconds")
    print(f"# version {found.version}, applied {at} by {found.applied_by}")
    for name, source in sorted(found.sources.items()):
        print(f"# --- {name}")
        print(source.rstrip("\n"))


@policy_app.command("diff")
def policy_diff(
    a: Annotated[str, typer.Argument(help="A version number, or policy files/directories.")],
    b: Annotated[str | None, typer.Argument(help="Another version (default: the applied one).")] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="text or json")] = "text",
) -> None:
    """What changes from one policy set to another: versions, or files against the applied set."""
    from liquid.policy.loader import load_policies
    from liquid.policy.store import active_policies, diff_policies, policy_version

    with _runtime() as rt:
        engine = rt.service.engine

        def version_set(v: str | None) -> Any:
            found = active_policies(engine) if v is None else policy_version(engine, int(v))
            if found is None:
                raise LiquidError(
                    f"no policy version {v}" if v else "no policies applied yet", field="version"
                )
            return found.policies

        new = version_set(b)
        old = version_set(a) if a.isdigit() else load_policies([Path(a)])
        diff = diff_policies(old, new) if a.isdigit() else diff_policies(new, old)
    if output == "json":
        print(json.dumps(diff.to_json(), indent=2))
        return
    console.print(diff.render(), highlight=False, markup=False)


@policy_app.command("rollback")
def policy_rollback(
    version: Annotated[int, typer.Argument(help="The version to go back to.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Roll back without asking.")] = False,
    actor: Annotated[str | None, typer.Option(help="Who rolls back (default: $USER).")] = None,
) -> None:
    """Apply an earlier version's files again, as the next version (history is never rewritten)."""
    import getpass

    from liquid.policy.store import active_policies, apply_policies, diff_policies, policy_version

    with _runtime() as rt:
        old = policy_version(rt.service.engine, version)
        if old is None:
            raise LiquidError(f"no policy version {version}", field="version")
        current = active_policies(rt.service.engine)
        _confirm_diff(
            diff_policies(current.policies if current else None, old.policies), yes, f"roll back to {version}"
        )
        applied = apply_policies(
            rt.service.engine,
            old.sources,
            actor=actor or getpass.getuser(),
            clock=rt.service.clock,
            expect_version=current.version if current else 0,
        )
    console.print(f"rolled back: version [bold]{applied.version}[/] holds version {version}'s files")


@policy_app.command("history")
def policy_history(limit: Annotated[int, typer.Option(min=1, help="Versions to show.")] = 20) -> None:
    """Applied policy versions, newest first."""
    from liquid.policy.store import history

    with _runtime() as rt:
        rows = history(rt.service.engine, limit)
    table = Table("version", "applied at", "by", "files")
    for version, at, by, files in rows:
        table.add_row(str(version), at.isoformat(timespec="seconds"), by or "", ", ".join(files))
    console.print(table)


@app.command()
def explain(
    ref: str,
    files: Annotated[
        list[Path] | None, typer.Option("--policies", help="Policy files; default: applied.")
    ] = None,
) -> None:
    """Which policy and rule govern REF, its score, where it is and should be, and what happens next."""
    from liquid.tiering.explain import explain as explain_row
    from liquid.tiering.planner import Planner
    from liquid.tiering.rows import CatalogRows

    r = _ref(ref)
    with _runtime() as rt:
        svc = rt.service
        svc.head(r.tenant, r)  # not found / gone errors, tenant-checked
        policies, _ = _policies(rt, files)
        now = svc.clock()
        row = CatalogRows(svc.engine, half_life=svc.settings.access.half_life).row(r, now)
        assert row is not None  # head() above proved it live
        print(
            json.dumps(
                explain_row(Planner(svc.settings), policies, row, now, hot=svc.hot, engine=svc.engine),
                indent=2,
            )
        )


tier_app = typer.Typer(help="Tiering by hand.", no_args_is_help=True)
app.add_typer(tier_app, name="tier")


@tier_app.command("run-once")
def tier_run_once(
    no_move: Annotated[
        bool, typer.Option("--no-move", help="Plan and queue only; leave moving to daemons.")
    ] = False,
    output: Annotated[str, typer.Option("--output", "-o", help="text or json")] = "text",
) -> None:
    """One daemon cycle in the foreground: flush access counts, plan, queue, move until idle."""
    from daemon.tiering import TieringDaemon

    with _runtime() as rt:
        d = TieringDaemon(rt)
        with console.status("starting") as status:
            summary = d.run_once(progress=lambda msg: status.update(msg), move=not no_move)
        d.resign()
    if output == "json":
        print(json.dumps(summary.as_dict(), indent=2, default=str))
        return
    if summary.plan is None:
        console.print(f"nothing planned: {summary.not_planned}", highlight=False, markup=False)
    else:
        console.print(summary.plan.render(), highlight=False, markup=False, soft_wrap=True)
    console.print_json(json.dumps({k: v for k, v in summary.as_dict().items() if k != "plan"}, default=str))


@tier_app.command("status")
def tier_status(
    since: Annotated[str, typer.Option(help="Show failures newer than this (e.g. 1h, 7d).")] = "24h",
    output: Annotated[str, typer.Option("--output", "-o", help="text or json")] = "text",
) -> None:
    """The move queue now (waiting and in flight, per kind and step) and recent failures with reasons."""
    from datetime import UTC, datetime, timedelta

    from liquid.tiering.journal import queue_counts, recent_failures

    if output not in ("text", "json"):
        raise typer.BadParameter("use text or json", param_hint="--output")
    with _runtime() as rt:
        counts = queue_counts(rt.service.engine)
        failed = recent_failures(
            rt.service.engine, since=datetime.now(UTC) - timedelta(seconds=_duration(since, "--since"))
        )
    if output == "json":
        print(json.dumps({"queued": counts, "failed": failed}, indent=2, default=str))
        return
    if not counts:
        console.print("queue: empty (nothing waiting or in flight)")
    else:
        table = Table("kind", "step", "rows", title="move queue")
        for key, n in sorted(counts.items()):
            kind, step = key.split(":", 1)
            table.add_row(kind, "waiting" if step == "planned" else f"in flight ({step})", str(n))
        console.print(table)
    if not failed:
        console.print(f"failures in the last {since}: none")
        return
    table = Table(
        "when", "object", "kind", "from → to", "attempts", "error", title=f"failures in the last {since}"
    )
    for f in failed:
        what = (
            f"liquid://{f['tenant_id']}/{f['namespace']}/{f['key']}@{f['version']}" if f["key"] else "(gone)"
        )
        table.add_row(
            str(f["updated_at"])[:19],
            what,
            str(f["kind"]),
            f"{f['from_tier']} → {f['to_tier'] or '-'}",
            str(f["attempts"]),
            escape(str(f["error"] or "")),
        )
    console.print(table)


def _print_activity(daemon: Any, since: datetime) -> datetime:
    """One line of what happened since ``since`` (nothing when all was quiet); returns the new mark."""
    from liquid.tiering.activity import activity

    now: datetime = daemon.service.clock()
    report = daemon.engine.last_report
    skipped = [why for _, _, why in report.skipped] if report is not None else []
    try:
        seen = activity(daemon.service.engine, since, now, skipped=skipped)
    except Exception as exc:  # a summary must never stop the service it summarises
        err.print(f"activity: {exc}", markup=False)
        return since
    if not seen.quiet:
        console.print(seen.line(), highlight=False, markup=False, soft_wrap=True)
    return now


def _serve_daemon_metrics(daemon: Any, port: int) -> str:
    """Serve the daemon's Prometheus registry on 127.0.0.1 (a free port when ``port`` is 0)."""
    from prometheus_client import start_http_server

    from liquid.embedded import free_port

    port = port or free_port()
    start_http_server(port, addr="127.0.0.1", registry=daemon.metrics.registry)
    return f"http://127.0.0.1:{port}/metrics"


@app.command("daemon")
def daemon_cmd() -> None:
    """Run the tiering daemon until SIGTERM (plan, admit hot copies, move, flush, gc on their intervals)."""
    import logging

    from daemon.tiering import TieringDaemon

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    with _runtime() as rt:
        d = TieringDaemon(rt)
        if rt.service.settings.daemon.metrics_port:
            err.print(f"metrics on {_serve_daemon_metrics(d, rt.service.settings.daemon.metrics_port)}")
        err.print(f"daemon {d.worker_id} running; SIGTERM or Ctrl-C stops it")
        d.run_forever()


@app.command("gc")
def gc_cmd(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report only; delete nothing.")] = False,
    grace: Annotated[
        str | None, typer.Option(help="Keep unreferenced bytes younger than this (e.g. 1h).")
    ] = None,
) -> None:
    """Reconcile stores against the catalog: delete orphaned bytes, report missing ones loudly."""
    from liquid.tiering.gc import reconcile_service

    with _runtime() as rt:
        grace_s = _duration(grace, "--grace") if grace else None
        report = reconcile_service(rt.service, grace=grace_s, dry_run=dry_run)
    console.print_json(json.dumps(report.as_dict(), default=str))
    if report.missing:
        err.print(f"[red]{len(report.missing)} catalog objects have no bytes: see the report above[/]")
        raise typer.Exit(2)


@app.command("api")
def api_command(
    host: Annotated[str | None, typer.Option(help="Bind address (default: api.host, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: api.port, 8780).")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the HTTP API (/v1) on the configured (or embedded) servers."""
    from liquid.api.server import serve

    with _runtime() as rt:
        serve(rt, host, port, log_level=log_level)


enc_app = typer.Typer(
    help="Envelope encryption keys (see liquid.keyring for rotation).", no_args_is_help=True
)
app.add_typer(enc_app, name="encryption")


@contextmanager
def _data_keys() -> Iterator[Any]:
    from liquid.bootstrap import master_keys
    from liquid.catalog import db
    from liquid.keyring import DataKeys

    settings = load_settings()
    masters = master_keys(settings)
    if masters is None:
        raise InvalidInput("envelope encryption is off (encryption.envelope: false)", field="encryption")
    if settings.catalog_url is None:
        raise InvalidInput(
            "set catalog_url (LIQUID_CATALOG_URL): keys live in the catalog", field="catalog_url"
        )
    engine = db.make_engine(settings.catalog_url, pool_size=1, pooler=settings.catalog_pooler)
    try:
        yield DataKeys(engine, masters)
    finally:
        engine.dispose()


@enc_app.command("status")
def encryption_status() -> None:
    """How many tenant data keys each master key wraps (an old master key can go at zero)."""
    with _data_keys() as keys:
        console.print(f"active master key: [bold]{keys.masters.active_id}[/]")
        for master, count in sorted(keys.count_by_master().items()):
            console.print(f"  {master}: {count} data key(s)")


@enc_app.command("rotate-master")
def encryption_rotate_master() -> None:
    """Rewrap every tenant data key with the active (first) master key."""
    with _data_keys() as keys:
        done, failed = keys.rotate_master()
    console.print(f"rewrapped {done} data key(s) with master key {keys.masters.active_id!r}")
    for reason in failed:
        err.print(f"[red]not rewrapped:[/] {escape(reason)}")
    if failed:
        raise typer.Exit(1)


@enc_app.command("rotate-tenant")
def encryption_rotate_tenant(tenant: TenantOpt) -> None:
    """Give a tenant a new data key; new objects use it, older ones keep theirs."""
    with _data_keys() as keys:
        version = keys.rotate(tenant)
    console.print(f"tenant [bold]{tenant}[/] now writes with data key v{version}")


@app.command()
def doctor() -> None:
    """Check the configuration and every configured server: reach, put/read/delete a probe, clock, schema.

    One line per check with a fix hint; exit code 1 if any check fails. Starts nothing embedded.
    """
    from liquid.doctor import Check, run_doctor
    from liquid.errors import ConfigError

    try:
        checks = run_doctor(load_settings())
    except ConfigError as exc:
        checks = [Check("config", "FAIL", exc.detail.replace("\n", " "), "fix the keys named above")]
    for check in checks:
        colour = {"ok": "green", "warn": "yellow", "FAIL": "red"}[check.status]
        console.print(f"[{colour}]{escape(check.line())}[/]", highlight=False, soft_wrap=True)
    failed = sum(c.status == "FAIL" for c in checks)
    if failed:
        err.print(f"[red]{failed} check(s) failed[/]")
        raise typer.Exit(1)


export_app = typer.Typer(help="Export the event log.", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("clickhouse")
def export_clickhouse(
    sink: Annotated[
        str | None,
        typer.Option(help="chdb:///path or clickhouse://user:pass@host:8123/db (default: events.sink)."),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Events per insert (default: events.batch_size).")
    ] = None,
    max_batches: Annotated[int | None, typer.Option(help="Stop after this many batches.")] = None,
) -> None:
    """Export events past the watermark into ClickHouse, exactly once, with a progress bar.

    chDB allows one process per path: stop a daemon exporting to the same path first.
    """
    from liquid.events.export import EventExporter
    from liquid.events.sinks import migrate, open_sink

    with _runtime() as rt:
        settings = rt.service.settings
        url = sink or settings.events.sink
        if url is None:
            raise InvalidInput("no sink: pass --sink chdb:///path (or set events.sink)", field="sink")
        target = open_sink(url)
        try:
            migrate(target)
            exporter = EventExporter(
                rt.service.engine, target, batch_size=batch_size or settings.events.batch_size
            )
            total = exporter.lag().events
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("events"),
                TimeRemainingColumn(),
                console=err,
                transient=True,
            ) as progress:
                task = progress.add_task(f"export → {target.name}", total=total)
                report = exporter.run_once(
                    max_batches=max_batches, progress=lambda n: progress.advance(task, n)
                )
            lag = exporter.lag()
        finally:
            target.close()
    console.print_json(json.dumps({**report.as_dict(), "lag_events": lag.events, "lag_seconds": lag.seconds}))


events_app = typer.Typer(help="The event log: tail it, check it against the catalog.", no_args_is_help=True)
app.add_typer(events_app, name="events")


def _event_line(ev: dict[str, Any]) -> str:
    what = ev["ref"] or ev["tenant"] or "-"
    tiers = f"{ev['from_tier']}→{ev['tier']}" if ev["from_tier"] else (ev["tier"] or "")
    extra = " ".join(
        f"{k}={v}"
        for k, v in (("bytes", ev["bytes"]), ("count", ev["count"]), ("trace", ev["trace_id"]))
        if v
    )
    return (
        f"{ev['at']}  {ev['id']:>10}  {ev['kind']:<20} {what}  {tiers}  {ev['actor'] or ''}  {extra}".rstrip()
    )


@events_app.command("tail")
def events_tail(
    kind: Annotated[
        str | None, typer.Option(help="Comma-separated kinds or short names: move,purge or apikey.*")
    ] = None,
    ref: Annotated[str | None, typer.Option(help="liquid://t/ns/key@3, or without @version for all.")] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", "-t", help="Only this tenant.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many of the latest events to show first.")] = 20,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new events.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between polls with --follow.")] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines.")] = False,
) -> None:
    """Print the latest events (oldest first), then new ones as they commit with --follow."""
    from liquid.events.history import EventQuery, RefFilter, tail
    from liquid.events.history import follow as follow_events
    from liquid.events.log import kinds_matching

    try:
        kinds = kinds_matching(kind.split(",")) if kind else []
    except ValueError as exc:
        raise InvalidInput(str(exc), field="kind") from None
    query = EventQuery(
        tenant=check_slug(tenant, "tenant") if tenant is not None else None,
        kinds=kinds,
        ref=RefFilter.parse(ref) if ref is not None else None,
        limit=limit,
    )

    def show(ev: dict[str, Any]) -> None:
        print(json.dumps(ev, ensure_ascii=False) if as_json else _event_line(ev), flush=True)

    with _runtime(migrate=False) as rt:
        engine = rt.service.engine
        latest, since = tail(engine, query)
        for ev in latest:
            show(ev)
        if not follow:
            return
        stop = threading.Event()
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            for ev in follow_events(
                engine, query, since=since, poll=interval, stop=stop.is_set, sleep=stop.wait
            ):
                show(ev)
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)


@events_app.command("replay")
def events_replay(
    check: Annotated[
        bool, typer.Option("--check", help="Compare the replayed state with the catalog (the only mode).")
    ] = False,
    tenant: Annotated[str | None, typer.Option("--tenant", "-t", help="Only this tenant's objects.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Divergences to list at most.")] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="The whole report as JSON.")] = False,
) -> None:
    """Rebuild every object's state and placement from the event log alone; exit 1 on any divergence."""
    from liquid.events import replay

    if not check:
        raise InvalidInput("replay only checks for now: run 'liquid events replay --check'", field="check")
    with _runtime(migrate=False) as rt:
        report = replay.check(
            rt.service.engine, tenant=check_slug(tenant, "tenant") if tenant else None, limit=limit
        )
    if as_json:
        console.print_json(json.dumps(report.as_dict()))
    else:
        states = ", ".join(f"{n} {s}" for s, n in sorted(report.states.items())) or "none"
        console.print(
            f"replayed {report.events} events of {report.objects} objects ({states}; {report.moves} moves)"
            + (
                f"; {report.unverifiable} created before the oldest retained event"
                if report.unverifiable
                else ""
            )
        )
        for d in report.divergences:
            console.print(escape(f"divergence: {d}"), style="red", soft_wrap=True)
            history = report.histories.get(d.object_id)
            if history:
                console.print(
                    escape("  placements: " + " → ".join(f"{t}:{s} ({at})" for at, t, s in history)),
                    soft_wrap=True,
                )
        console.print("no divergence" if report.ok else f"{len(report.divergences)} divergence(s)")
    if not report.ok:
        raise typer.Exit(1)


@app.command("dashboard")
def dashboard_cmd(
    api_url: Annotated[
        str, typer.Option(envvar="LIQUID_DASHBOARD_API_URL", help="The API to read.")
    ] = "http://127.0.0.1:8780",
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="LIQUID_DASHBOARD_API_KEY",
            help="An operator key (`liquid key create --admin`); passed to Streamlit in its environment.",
        ),
    ] = None,
    port: Annotated[int, typer.Option(help="Port (0 picks a free one).")] = 8781,
    host: Annotated[
        str,
        typer.Option(help="Bind address: loopback unless you put it behind a proxy (containers: 0.0.0.0)."),
    ] = "127.0.0.1",
) -> None:
    """The Streamlit cost and usage dashboard (127.0.0.1 by default), reading the API with an operator key."""
    from dashboard.server import DashboardServer

    if not api_key:
        raise LiquidError(
            "the dashboard reads the API with an operator key: pass --api-key or set"
            " LIQUID_DASHBOARD_API_KEY (create one with `liquid key create --admin`)",
            field="--api-key",
        )
    server = DashboardServer(api_url=api_url, api_key=api_key, port=port, host=host)
    with console.status("starting the dashboard…"):
        url = server.start()
    console.print(f"dashboard: {url}  (API {api_url}); Ctrl-C stops it")
    _wait_for_stop()
    server.stop()
    console.print("stopped")


def _wait_for_stop(*, every: float = 0.5, tick: Callable[[], None] | None = None) -> None:
    """Block until Ctrl-C or SIGTERM, calling ``tick`` every ``every`` seconds meanwhile."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(every if tick is not None else 0.5):
            if tick is not None:
                tick()
    except KeyboardInterrupt:
        pass


@app.command()
def up(
    once: Annotated[
        bool, typer.Option("--once", help="Start, load the demo, print, then stop everything and exit.")
    ] = False,
    port: Annotated[
        int | None, typer.Option(help="API port (default: api.port, 8780; 0 picks a free one).")
    ] = None,
    activity_every: Annotated[
        str,
        typer.Option(help="Print a line of what the daemon did this often (moves, purges, queue); 0: never."),
    ] = "1m",
    dashboard_port: Annotated[
        int, typer.Option(help="Dashboard port (default 8781; a free one if taken; -1: no dashboard).")
    ] = 8781,
) -> None:
    """Start embedded servers, the API, the daemon and the dashboard with demo data; Ctrl-C stops it all."""
    import logging

    from daemon.tiering import TieringDaemon
    from liquid.api.server import ApiServer, curl_example, demo_key
    from liquid.bootstrap import open_runtime
    from liquid.demo import DEMO_POLICY, DEMO_TENANT, load_demo
    from liquid.policy.store import active_policies, apply_policies, read_sources

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = load_settings()
    if settings.events.sink is None:  # the daemon exports the event log into embedded ClickHouse
        settings.events.sink = f"chdb://{settings.home}/clickhouse"
    with console.status("starting embedded PostgreSQL, Valkey and the cold store…"):
        rt = open_runtime(settings)
    svc = rt.service
    server = daemon = None
    dash: Any = None
    try:
        with console.status("loading demo data and policies…"):
            demo = load_demo(svc)
            # The operator's applied policies survive a restart; the demo's are applied only once.
            applied = active_policies(svc.engine)
            if applied is None:
                applied = apply_policies(
                    svc.engine, read_sources([DEMO_POLICY]), actor="liquid up", clock=svc.clock
                )
        want = settings.api.port if port is None else port
        server = ApiServer(svc, host=settings.api.host, port=want)
        try:
            base = server.start()
        except (RuntimeError, OSError):
            server = ApiServer(svc, host=settings.api.host, port=0)  # the configured port is taken
            base = server.start()
        daemon = TieringDaemon(rt)
        daemon.start()
        daemon_metrics = _serve_daemon_metrics(daemon, settings.daemon.metrics_port)
        key = demo_key(svc, DEMO_TENANT)
        dash, dash_url = _start_dashboard(svc, base, settings.home, dashboard_port)

        table = Table("what", "where", title="Liquid is up")
        table.add_row("API", f"{base}  (OpenAPI: {base}/docs)")
        table.add_row("metrics", f"{base}/metrics (API), {daemon_metrics} (daemon: moves, queue, budgets)")
        table.add_row("dashboard", dash_url)
        for name, url in rt.urls.items():
            table.add_row(name, _redact(url))
        table.add_row("demo tenant key", key)
        table.add_row(
            "demo objects",
            f"{demo['objects']} ({'loaded now' if demo['seeded'] else 'kept from the last run'}); "
            f"policies: version {applied.version} by {applied.applied_by}; daemon {daemon.worker_id}",
        )
        table.add_row(
            "tiers",
            ", ".join(f"{t}: {getattr(settings.tiers, t)}" for t in ("hot", "warm", "cold", "archive")),
        )
        console.print(table)
        console.print("try:")
        print(f"  {curl_example(base, key, demo['inline_ref'])}")
        print("  .venv/bin/liquid policy plan --output json | head -40")
        if once:
            return
        console.print("running; Ctrl-C stops the API, the daemon, the dashboard and the embedded servers")
        every = _duration(activity_every, "--activity-every")
        since = svc.clock()

        def activity() -> None:
            nonlocal since
            since = _print_activity(daemon, since)

        _wait_for_stop(every=every, tick=activity if every else None)
    finally:
        if dash is not None:
            dash.stop()
        if daemon is not None:
            daemon.stop()
        if server is not None:
            server.stop()
        rt.close(stop_embedded=True)
        console.print("stopped")


def _start_dashboard(svc: Any, api_url: str, home: Path, port: int) -> tuple[Any, str]:
    """The dashboard beside ``liquid up``'s API with a fresh operator key; (server or None, what to print)."""
    if port < 0:
        return None, "off (--dashboard-port -1); start it with `liquid dashboard --api-key KEY`"
    try:
        from dashboard.server import DashboardNotStarted, DashboardServer, port_is_free
    except ImportError as exc:
        return None, f"not installed ({exc.name} is missing): pip install 'liquid-data[dashboard]'"
    key = svc.tenancy.create_api_key(None, admin=True, name="dashboard", actor="liquid up")
    server = DashboardServer(
        api_url=api_url,
        api_key=key,
        port=port if port and port_is_free(port) else 0,
        log_file=Path(home) / "dashboard.log",
    )
    try:
        with console.status("starting the dashboard…"):
            return server, server.start()
    except DashboardNotStarted as exc:
        return None, f"did not start: {exc}"


@app.command()
def down() -> None:
    """Stop embedded servers left running under the configured home (e.g. after a crash)."""
    from liquid.embedded import EmbeddedStack

    stopped = EmbeddedStack(load_settings().home).kill()
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "no embedded servers were running")


def _redact(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def main() -> None:
    """Entry point: Liquid errors become one red line and exit code 1, never a traceback."""
    try:
        app()
    except LiquidError as exc:
        where = f" [{exc.field}]" if exc.field else ""
        err.print(f"[red]error{escape(where)}:[/] {escape(exc.detail)}", highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
