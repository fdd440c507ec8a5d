"""The Kubernetes manifests (deploy/k8s), validated offline: no cluster runs here.

Each kustomization (the base and every overlay) is rendered as kustomize would (resources,
strategic-merge patches by kind and name, containers and env merged by name, the namespace and
image tag set) and every object validated against the API schemas of a current Kubernetes
release (`kubernetes-validate`, strict: no unknown fields). Custom resources (KEDA, the
Prometheus Operator) have no schema there and are checked for what dads relies on. And the
manifests cannot drift from the rest: every DADS_* variable is one `config.py` documents and
compose sets, the ports are the services' defaults, the commands are the image's, the
autoscaling metric is the planner's, the dashboard is Grafana's file.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

kubernetes_validate = pytest.importorskip("kubernetes_validate")

from common.runtime import config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES = "1.33.0"  # a current release; the package ships its schemas
CUSTOM = {"keda.sh/v1alpha1", "monitoring.coreos.com/v1"}


def _merge(base: Any, patch: Any) -> Any:
    """A strategic merge as kustomize does it for these objects: maps recursively, lists of
    named items (containers, env, ports, volumes) by name, other lists replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = _merge(base[k], v) if k in base else v
        return out
    if (isinstance(base, list) and isinstance(patch, list) and patch
            and all(isinstance(x, dict) and "name" in x for x in base + patch)):
        out = [copy.deepcopy(x) for x in base]
        for item in patch:
            at = next((i for i, x in enumerate(out) if x["name"] == item["name"]), None)
            if at is None:
                out.append(item)
            else:
                out[at] = _merge(out[at], item)
        return out
    return patch


def render(folder: Path) -> list[dict[str, Any]]:
    kust = yaml.safe_load((folder / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for res in kust.get("resources", []):
        path = (folder / res).resolve()
        if path.is_dir():
            docs += render(path)
        else:
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    for patch in kust.get("patches", []):
        p = yaml.safe_load((folder / patch["path"]).read_text())
        hits = [i for i, d in enumerate(docs) if d["kind"] == p["kind"]
                and d["metadata"]["name"] == p["metadata"]["name"]]
        assert len(hits) == 1, f"{patch['path']} patches {len(hits)} objects"
        docs[hits[0]] = _merge(docs[hits[0]], p)
    for d in docs:
        if "namespace" in kust:
            d["metadata"]["namespace"] = kust["namespace"]
        for c in _containers(d):
            for img in kust.get("images", []):
                if c["image"] == img["name"]:
                    c["image"] = f"{img['name']}:{img['newTag']}"
    return docs


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])


KUSTOMIZATIONS = sorted(p.parent for p in K8S.rglob("kustomization.yaml"))


@pytest.mark.parametrize("folder", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(K8S)))
def test_every_object_validates_against_the_kubernetes_api(folder: Path) -> None:
    docs = render(folder)
    assert docs
    for doc in docs:
        if doc["apiVersion"] in CUSTOM:
            continue  # below
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_the_custom_resources_scale_and_scrape_what_dads_serves() -> None:
    keda = render(K8S / "overlays" / "keda")
    scaled = next(d for d in keda if d["kind"] == "ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "cloud-worker"
    assert "dads_pool_workers_wanted" in scaled["spec"]["triggers"][0]["metadata"]["query"]
    monitors = render(K8S / "overlays" / "prometheus-operator")
    services = {d["metadata"]["name"]: d for d in monitors if d["kind"] == "Service"}
    assert {"broker", "planner"} <= {n for n, s in services.items()
                                     if any(p["name"] == "metrics" for p in s["spec"]["ports"])}
    pods = next(d for d in monitors if d["kind"] == "PodMonitor")
    worker = next(d for d in monitors if d["kind"] == "Deployment"
                  and d["metadata"]["name"] == "cloud-worker")
    assert pods["spec"]["selector"]["matchLabels"].items() <= \
        worker["spec"]["template"]["metadata"]["labels"].items()


def test_the_manifests_and_compose_cannot_drift() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    docs = render(K8S / "base")
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "dads-config")
    names = set(cm["data"])
    for d in docs:
        for c in _containers(d):
            names |= {e["name"] for e in c.get("env", [])}
            assert c["args"][0] in ("broker", "planner", "cloud-worker")  # the image's commands
            assert c["image"] == compose["x-dads"]["image"]
    assert names <= set(config.ENV), names - set(config.ENV)  # documented, defaulted in one place
    compose_env = {k for s in compose["services"].values() for k in (s.get("environment") or {})}
    assert names <= compose_env | {"DADS_CACHE", "DADS_BROKER_HOST", "DADS_PLANNER_HOST"}
    ports = {p["name"]: p["port"] for d in docs if d["kind"] == "Service"
             for p in d["spec"]["ports"]}
    for var, name in (("DADS_FRONTEND_PORT", "frontend"), ("DADS_BACKEND_PORT", "backend"),
                      ("DADS_PLAN_PORT", "plans"), ("DADS_TELEMETRY_PORT", "telemetry")):
        assert ports[name] == int(config.ENV[var][0]), var
    # every service's health probe reads the metrics port it serves
    for d in docs:
        for c in _containers(d):
            port = next(e["value"] for e in c["env"] if e["name"] == "DADS_METRICS_PORT")
            assert c["readinessProbe"]["exec"]["command"] == ["dads", "health", "--port", port]
            assert d["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == port


def test_a_worker_drains_within_its_grace_period_and_autoscales_on_the_planners_metric() -> None:
    from common.runtime.metrics import PlannerMetrics

    worker = next(d for d in render(K8S / "base") if d["metadata"]["name"] == "cloud-worker"
                  and d["kind"] == "Deployment")
    args = _containers(worker)[0]["args"]
    drain = float(args[args.index("--drain") + 1])
    assert drain < worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    hpa = next(d for d in render(K8S / "overlays" / "autoscale")
               if d["kind"] == "HorizontalPodAutoscaler")
    metric = hpa["spec"]["metrics"][0]["external"]["metric"]["name"]
    assert metric in PlannerMetrics().registry._names_to_collectors  # the planner exports it
    assert hpa["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    gpu = next(d for d in render(K8S / "overlays" / "gpu") if d["kind"] == "Deployment"
               and d["metadata"]["name"] == "cloud-worker")
    c = _containers(gpu)[0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"name": "DADS_DEVICE", "value": "cuda"} in c["env"]
    assert c["args"] == args  # the patch changed only what it says


def test_the_dashboard_is_grafanas() -> None:
    cm = next(d for d in render(K8S / "base") if d["metadata"]["name"] == "grafana-dashboard-dads")
    shipped = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "dads.json").read_text())
    assert json.loads(cm["data"]["dads.json"]) == shipped
