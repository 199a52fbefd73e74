"""The deploy/ examples parse and say what they claim: replicas writing PostgreSQL as the writer role,
the dashboard reading as the reader role, Prometheus scraping, no password in any URL."""

from __future__ import annotations

import yaml

from mcplens.store.postgres import mask_url
from tests.conftest import REPO

DEPLOY = REPO / "deploy"


def _stores(env: object) -> list[str]:
    if isinstance(env, dict):
        return [v for k, v in env.items() if k == "MCPLENS_STORE"]
    return [e["value"] for e in env or [] if e.get("name") == "MCPLENS_STORE"]  # type: ignore[union-attr]


def test_compose_file() -> None:
    doc = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = doc["services"]
    assert {"postgres", "migrate", "mcp-server", "dashboard", "prometheus"} <= set(services)
    server = services["mcp-server"]
    assert server["deploy"]["replicas"] > 1
    assert _stores(server["environment"])[0].startswith("postgresql://fleet_writer@")
    assert _stores(services["dashboard"]["environment"])[0].startswith("postgresql://fleet_reader@")
    assert "db upgrade" in " ".join(services["migrate"]["command"])
    assert "db rollup" in " ".join(services["rollup"]["command"])
    assert _stores(services["rollup"]["environment"])[0].startswith("postgresql://mcplens_admin@")
    assert set(doc["secrets"]) >= {s for svc in services.values() for s in svc.get("secrets", [])}
    prom = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    assert prom["scrape_configs"][0]["dns_sd_configs"][0]["names"] == ["mcp-server"]
    for svc in services.values():
        for url in _stores(svc.get("environment", {})):
            assert mask_url(url) == url, f"a password in {url!r}: use PGPASSFILE"


def test_kubernetes_snippet() -> None:
    docs = [d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "mcplens-fleet.yaml").read_text()) if d]
    for d in docs:
        assert {"apiVersion", "kind", "metadata"} <= set(d), d
    kinds = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    server = kinds[("Deployment", "mcp-server")]["spec"]
    assert server["replicas"] > 1
    assert server["selector"]["matchLabels"] == server["template"]["metadata"]["labels"]
    pod = server["template"]["spec"]
    assert _stores(pod["containers"][0]["env"])[0].startswith("postgresql://fleet_writer@")
    assert pod["initContainers"][0]["command"] == ["mcplens", "db", "upgrade"]
    dash = kinds[("Deployment", "mcplens-dashboard")]["spec"]["template"]["spec"]["containers"][0]
    assert _stores(dash["env"])[0].startswith("postgresql://fleet_reader@")
    assert ("CronJob", "mcplens-retention") in kinds and ("Deployment", "prometheus") in kinds
    rollup = kinds[("CronJob", "mcplens-rollup")]["spec"]
    job = rollup["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert job["command"] == ["mcplens", "db", "rollup"] and rollup["concurrencyPolicy"] == "Forbid"
    prom = yaml.safe_load(kinds[("ConfigMap", "prometheus-config")]["data"]["prometheus.yml"])
    assert prom["scrape_configs"][0]["job_name"] == "mcplens"
    for d in docs:
        for url in _urls(d):
            assert mask_url(url) == url, f"a password in {url!r}: use PGPASSFILE"


def _urls(node: object) -> list[str]:
    if isinstance(node, dict):
        return [u for v in node.values() for u in _urls(v)]
    if isinstance(node, list):
        return [u for v in node for u in _urls(v)]
    return [node] if isinstance(node, str) and node.startswith("postgresql://") else []

