"""The production and development compose files, checked against the code they start."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import DEPLOY, check_cli_args, unknown_liquid_vars

PROD = DEPLOY / "docker-compose.yml"
DEV = DEPLOY / "docker-compose.dev.yml"
LIQUID_ROLES = {"api-1", "api-2", "daemon-1", "daemon-2", "dashboard", "migrate"}
#: One-shot jobs: they exit, so a health check would mean nothing.
ONE_SHOT = {"migrate", "minio-init"}


def _services(path: Any) -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(path.read_text())
    services: dict[str, dict[str, Any]] = doc["services"]
    return services


@pytest.fixture(scope="module")
def prod() -> dict[str, dict[str, Any]]:
    return _services(PROD)


def _is_liquid(svc: dict[str, Any]) -> bool:
    return svc.get("build", {}).get("dockerfile") == "deploy/Dockerfile"


def test_production_has_every_part(prod: dict[str, dict[str, Any]]) -> None:
    for part in ("postgres", "redis", "minio", "clickhouse", "qdrant", "proxy", *LIQUID_ROLES):
        assert part in prod, f"{part} missing from {PROD.name}"
    assert "pgvector" in prod["postgres"]["image"]
    assert {n for n, s in prod.items() if _is_liquid(s)} == LIQUID_ROLES


def test_every_service_has_image_and_health_check(prod: dict[str, dict[str, Any]]) -> None:
    for name, svc in prod.items():
        assert svc.get("image"), f"{name} has no image"
        if name in ONE_SHOT:
            continue
        test = svc.get("healthcheck", {}).get("test")
        assert test and not svc["healthcheck"].get("disable"), f"{name} has no health check"


def test_liquid_services_share_one_image_and_run_real_commands(prod: dict[str, dict[str, Any]]) -> None:
    images = {prod[n]["image"] for n in LIQUID_ROLES}
    assert len(images) == 1, f"Liquid roles use different images: {images}"
    roles = {}
    for name in LIQUID_ROLES:
        command = prod[name]["command"]
        assert isinstance(command, list), f"{name}: write the command as a list, got {command!r}"
        check_cli_args(command)
        roles[name] = command[0]
    assert roles == {
        "api-1": "api", "api-2": "api", "daemon-1": "daemon", "daemon-2": "daemon",
        "dashboard": "dashboard", "migrate": "db",
    }  # fmt: skip


def test_api_health_checks_hit_the_real_routes(prod: dict[str, dict[str, Any]]) -> None:
    from liquid.api.app import create_app  # noqa: F401  (the routes below are the app's)
    from liquid.api.routes import router

    paths = {getattr(r, "path", "") for r in router.routes}
    for name in ("api-1", "api-2"):
        probe = " ".join(prod[name]["healthcheck"]["test"])
        route = re.search(r"127\.0\.0\.1:8780(/\w+)", probe)
        assert route and route.group(1) in paths, f"{name} probes {probe!r}, not an API route"


def test_liquid_env_names_are_settings_the_code_reads(env_names: Any) -> None:
    for path in (PROD, DEV):
        for name, svc in _services(path).items():
            env = svc.get("environment") or {}
            assert isinstance(env, dict), f"{path.name}:{name}: write environment as a mapping"
            bad = unknown_liquid_vars(list(env), env_names)
            assert not bad, f"{path.name}:{name} sets {bad}, which liquid.config.Settings does not read"


def test_liquid_services_have_catalog_and_stores(prod: dict[str, dict[str, Any]]) -> None:
    for name in LIQUID_ROLES - {"dashboard"}:
        env = prod[name]["environment"]
        for var in ("LIQUID_CATALOG_URL", "LIQUID_STORES__HOT", "LIQUID_STORES__WARM", "LIQUID_STORES__COLD"):
            assert var in env, f"{name} lacks {var}"
    # The dashboard reads through the API: it must hold no database or Redis credentials.
    dash = prod["dashboard"].get("environment") or {}
    assert not {k for k in dash if k.startswith(("LIQUID_CATALOG", "LIQUID_STORES"))}


def test_no_published_ports_but_the_proxy(prod: dict[str, dict[str, Any]]) -> None:
    for name in ("postgres", "redis"):
        assert "ports" not in prod[name], f"{name} publishes ports in production"
    published = {n for n, s in prod.items() if s.get("ports")}
    assert published == {"proxy"}, f"services publishing ports: {published}"
    doc = yaml.safe_load(PROD.read_text())
    assert doc["networks"]["internal"].get("internal") is True
    for name in ("postgres", "redis"):
        assert prod[name]["networks"] == ["internal"]


def test_no_secret_literals_in_production() -> None:
    text = PROD.read_text()
    for var in ("POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "CLICKHOUSE_PASSWORD", "REDIS_PASSWORD"):
        for value in re.findall(rf"{var}: (.+)", text):
            assert value.startswith("${"), f"{var} is a literal ({value!r}); take it from the environment"


def test_stateful_services_use_named_volumes(prod: dict[str, dict[str, Any]]) -> None:
    declared = set(yaml.safe_load(PROD.read_text())["volumes"])
    for name in ("postgres", "minio", "clickhouse", "qdrant"):
        vols = prod[name].get("volumes", [])
        assert vols and all(v.split(":")[0] in declared for v in vols), f"{name}: {vols}"


def test_proxy_balances_over_both_api_replicas(prod: dict[str, dict[str, Any]]) -> None:
    caddy = (DEPLOY / "proxy" / "Caddyfile").read_text()
    upstreams = set(re.findall(r"(api-\d+):8780", caddy))
    assert upstreams == {n for n in LIQUID_ROLES if n.startswith("api-")}
    assert "health_uri /readyz" in caddy
    mounted = [v.split(":")[0] for v in prod["proxy"]["volumes"]]
    assert "./proxy/Caddyfile" in mounted


def test_dev_stack_keeps_loopback_ports_for_the_tests() -> None:
    dev = _services(DEV)
    for name in ("postgres", "redis", "minio"):
        assert all(p.startswith("127.0.0.1:") for p in dev[name]["ports"]), name
    check_cli_args(dev["migrate"]["command"])


def test_secrets_used_are_declared(prod: dict[str, dict[str, Any]]) -> None:
    declared = set(yaml.safe_load(PROD.read_text()).get("secrets", {}))
    for name, svc in prod.items():
        assert set(svc.get("secrets", [])) <= declared, name
    files = {
        n for n, s in prod.items() if "LIQUID_ENCRYPTION__MASTER_KEYS_FILE" in (s.get("environment") or {})
    }
    for name in files:
        path = prod[name]["environment"]["LIQUID_ENCRYPTION__MASTER_KEYS_FILE"]
        assert path.startswith("/run/secrets/") and path.rsplit("/", 1)[1] in prod[name]["secrets"], name
