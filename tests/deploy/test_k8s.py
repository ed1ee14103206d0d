"""The Kubernetes manifests, checked against the code they start."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from liquid.config import load_settings
from liquid.policy.loader import load_policy_sources
from tests.deploy.conftest import DEPLOY, check_cli_args, load_yaml_docs, unknown_liquid_vars

K8S = DEPLOY / "k8s"


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    kust = load_yaml_docs(K8S / "kustomization.yaml")[0]
    listed = set(kust["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present, f"kustomization lists {sorted(listed)}, the directory has {sorted(present)}"
    out: list[dict[str, Any]] = []
    for name in kust["resources"]:
        out += load_yaml_docs(K8S / name)
    return out


def _kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _containers(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = doc["spec"]["template"]["spec"]
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def _workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in ("Deployment", "Job")]


def test_deployments_for_each_role(docs: list[dict[str, Any]]) -> None:
    deps = _kind(docs, "Deployment")
    assert set(deps) == {"liquid-api", "liquid-daemon", "liquid-dashboard"}
    roles = {n: next(_containers(d))["args"][0] for n, d in deps.items()}
    assert roles == {"liquid-api": "api", "liquid-daemon": "daemon", "liquid-dashboard": "dashboard"}
    assert deps["liquid-api"]["spec"]["replicas"] >= 2
    job = _kind(docs, "Job")["liquid-migrate"]
    assert next(c["args"][:2] for c in _containers(job)) == ["db", "upgrade"]


def test_every_container_runs_a_real_command_in_one_image(docs: list[dict[str, Any]]) -> None:
    images = set()
    for doc in _workloads(docs):
        for c in _containers(doc):
            check_cli_args(c["args"])
            images.add(c["image"])
    assert len(images) == 1, images


def test_every_container_is_non_root_with_resources(docs: list[dict[str, Any]]) -> None:
    for doc in _workloads(docs):
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for c in _containers(doc):
            where = f"{doc['metadata']['name']}/{c['name']}"
            assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"], where
            assert c["resources"]["limits"]["memory"], where
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, where


def test_api_probes_healthz_and_readyz(docs: list[dict[str, Any]]) -> None:
    from liquid.api.routes import router

    routes = {getattr(r, "path", "") for r in router.routes}
    api = next(_containers(_kind(docs, "Deployment")["liquid-api"]))
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"/healthz", "/readyz"} <= routes
    for doc in _kind(docs, "Deployment").values():
        for c in _containers(doc):
            assert "livenessProbe" in c, f"{doc['metadata']['name']} has no liveness probe"


def test_env_names_are_settings_the_code_reads(docs: list[dict[str, Any]], env_names: Any) -> None:
    secret = _kind(docs, "Secret")["liquid-secrets"]
    assert not unknown_liquid_vars(list(secret["stringData"]), env_names)
    for doc in _workloads(docs):
        for c in _containers(doc):
            names = [e["name"] for e in c.get("env", [])]
            bad = unknown_liquid_vars(names, env_names)
            assert not bad, f"{doc['metadata']['name']}/{c['name']} sets {bad}, not read by Settings"
            for ref in c.get("envFrom", []):
                assert ref["secretRef"]["name"] in _kind(docs, "Secret")


def test_configmap_is_valid_settings_and_policies(
    docs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    import yaml

    for name in [n for n in os.environ if n.startswith("LIQUID_")]:
        monkeypatch.delenv(name)
    data = _kind(docs, "ConfigMap")["liquid-config"]["data"]
    config = yaml.safe_load(data["liquid.yaml"])
    secret = _kind(docs, "Secret")["liquid-secrets"]["stringData"]
    stores = {k.removeprefix("LIQUID_STORES__").lower(): v for k, v in secret.items() if "STORES__" in k}
    settings = load_settings(**config, stores=stores)  # the real validation, tiers → stores included
    assert settings.api.host == "0.0.0.0"
    policies = {k: v for k, v in data.items() if k != "liquid.yaml"}
    assert policies
    load_policy_sources(policies)  # raises PolicyError naming the file and line


def test_pdbs_cover_api_and_daemon(docs: list[dict[str, Any]]) -> None:
    pdbs = _kind(docs, "PodDisruptionBudget")
    deps = _kind(docs, "Deployment")
    for name in ("liquid-api", "liquid-daemon"):
        sel = pdbs[name]["spec"]["selector"]["matchLabels"]
        assert sel == deps[name]["spec"]["selector"]["matchLabels"]


def test_network_policy_keeps_postgres_and_redis_private(docs: list[dict[str, Any]]) -> None:
    nps = _kind(docs, "NetworkPolicy")
    assert nps["default-deny-ingress"]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    for name, app_name, port in (("postgres-private", "postgres", 5432), ("redis-private", "redis", 6379)):
        spec = nps[name]["spec"]
        assert spec["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": app_name}
        (rule,) = spec["ingress"]
        assert rule["ports"] == [{"protocol": "TCP", "port": port}]
        (peer,) = rule["from"]
        assert set(peer) == {"podSelector"}, "no namespaceSelector/ipBlock: pods of this namespace only"
        exprs = {e["key"]: e["values"] for e in peer["podSelector"]["matchExpressions"]}
        assert exprs["app.kubernetes.io/part-of"] == ["liquid"]
        assert "dashboard" not in exprs["app.kubernetes.io/component"]


def test_mounted_secrets_and_config_maps_exist(docs: list[dict[str, Any]]) -> None:
    secrets, maps = _kind(docs, "Secret"), _kind(docs, "ConfigMap")
    for doc in _workloads(docs):
        volumes = doc["spec"]["template"]["spec"].get("volumes", [])
        for vol in volumes:
            if "secret" in vol:
                assert vol["secret"]["secretName"] in secrets, vol
            if "configMap" in vol:
                cm = maps[vol["configMap"]["name"]]
                for item in vol["configMap"].get("items", []):
                    assert item["key"] in cm["data"], item
        names = {v["name"] for v in volumes}
        for c in _containers(doc):
            for mount in c.get("volumeMounts", []):
                assert mount["name"] in names, f"{doc['metadata']['name']}/{c['name']} mounts {mount['name']}"
