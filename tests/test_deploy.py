"""What can be checked of the deployment without a Docker engine."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from common.runtime.config import ENV
from common.runtime.metrics import BrokerMetrics, EdgeMetrics, PlannerMetrics, WorkerMetrics

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_compose_file_follows_the_compose_specification() -> None:
    exe = Path(sys.executable).parent / "check-jsonschema"
    out = subprocess.run([str(exe), "--builtin-schema", "vendor.compose-spec",
                          str(ROOT / "docker-compose.yml")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_service_has_a_profile_and_dependencies_stay_inside_it() -> None:
    for name, svc in SERVICES.items():
        assert svc.get("profiles") in (["cloud"], ["edge"], ["edge-server"], ["workers"]), name
        for dep in svc.get("depends_on", {}):
            assert SERVICES[dep]["profiles"] == svc["profiles"], (name, dep)
    cloud = {n for n, s in SERVICES.items() if s["profiles"] == ["cloud"]}
    assert {"broker", "planner", "cloud_worker", "prometheus"} <= cloud
    assert SERVICES["edge_agent"]["profiles"] == ["edge"]
    middle = {n for n, s in SERVICES.items() if s["profiles"] == ["edge-server"]}
    assert middle == {"edge_server_broker", "edge_server_worker"}
    # a second cloud machine: workers only, reaching the cloud's published worker port
    assert {n for n, s in SERVICES.items() if s["profiles"] == ["workers"]} == {"remote_worker"}
    env = SERVICES["remote_worker"]["environment"]
    assert env["DADS_BACKEND_PORT"] == "${DADS_BACKEND_PORT:-5556}"
    assert "${DADS_BACKEND_PORT:-5556}:5556" in SERVICES["broker"]["ports"]


def test_the_three_tier_overlay_changes_only_what_a_tier_needs() -> None:
    """deploy/three-tiers.yml: the planner over three tiers, the device sending to the edge
    server; the middle tier's worker forwards to the cloud's broker, its own broker beside it."""
    overlay = yaml.safe_load((ROOT / "deploy/three-tiers.yml").read_text())["services"]
    assert set(overlay) == {"planner", "edge_agent"}
    assert overlay["planner"]["environment"]["DADS_TIERS"] == "device,edge,cloud"
    assert "EDGE_SERVER_HOST" in overlay["edge_agent"]["environment"]["DADS_BROKER_HOST"]
    worker = SERVICES["edge_server_worker"]["environment"]
    assert worker["DADS_TIER"] == "edge" and worker["DADS_BROKER_HOST"] == "edge_server_broker"
    assert "CLOUD_HOST" in worker["DADS_NEXT_BROKER"]
    assert "container_name" not in SERVICES["edge_server_worker"]  # it scales


def test_workers_scale() -> None:
    worker = SERVICES["cloud_worker"]
    assert "container_name" not in worker and "ports" not in worker
    assert worker["environment"]["DADS_BROKER_HOST"] == "broker"
    assert all("restart" in s for s in SERVICES.values())


def test_every_setting_is_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    for var in ENV:
        assert f"`{var}`" in readme, f"{var} is not in the README's settings table"
    text = (ROOT / "docker-compose.yml").read_text()
    for var in set(re.findall(r"\b(DADS_[A-Z_]+)", text)):
        assert var in ENV, f"compose sets {var}, which no service reads"
    for var in ("CLOUD_HOST", "EDGE_HOST", "COMPOSE_PROFILES"):
        assert var in readme


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool not installed (Debian package 'prometheus'; .ci/run installs it)")
def test_prometheus_config_is_valid() -> None:
    out = subprocess.run(["promtool", "check", "config", str(ROOT / "deploy/prometheus/prometheus.yml")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    jobs = {j["job_name"] for j in yaml.safe_load(
        (ROOT / "deploy/prometheus/prometheus.yml").read_text())["scrape_configs"]}
    assert jobs == {"broker", "planner", "cloud_worker", "edge_agent"}


def exported_names() -> set[str]:
    names = set()
    for metrics in (EdgeMetrics(), BrokerMetrics(), WorkerMetrics(), PlannerMetrics()):
        for family in metrics.registry.collect():  # labelled metrics have no samples yet
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"],
                        "info": ["_info"]}.get(family.type, [""])
            names |= {family.name + suffix for suffix in suffixes}
    return names


def test_dashboard_queries_only_exported_metrics() -> None:
    sys.path.insert(0, str(ROOT / "deploy/grafana"))
    from make_dashboard import dashboard

    on_disk = json.loads((ROOT / "deploy/grafana/dashboards/dads.json").read_text())
    assert on_disk == dashboard(), "run deploy/grafana/make_dashboard.py"
    exported = exported_names()
    used = set()
    for panel in on_disk["panels"]:
        for target in panel["targets"]:
            used |= set(re.findall(r"\bdads_[a-z_]+", target["expr"]))
    assert used and used <= exported, used - exported
    titles = " ".join(p["title"] for p in on_disk["panels"]).lower()
    for want in ("latency", "frames per second", "stage", "bandwidth", "plan", "workers", "drops"):
        assert want in titles
