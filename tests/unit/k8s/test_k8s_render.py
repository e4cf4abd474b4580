"""Every kustomization renders, every built-in object validates against a stated Kubernetes schema, and the
GRPCRoute (a CRD without a bundled schema) is checked structurally."""

from __future__ import annotations

from collections import Counter
from typing import Any

import kubernetes_validate
import pytest
from k8s_render import TARGETS, find, render

# The oldest release these manifests are meant for (preStop `sleep` needs 1.30+) and the newest schema bundled.
K8S_VERSIONS = ("1.33.0", "1.37.0")
CRD_KINDS = {"GRPCRoute", "ServiceMonitor", "PrometheusRule"}

EXPECTED_KINDS = {
    "overlays/gpu": {
        "ServiceAccount": 1,
        "ConfigMap": 1,
        "Service": 2,
        "Deployment": 1,
        "PodDisruptionBudget": 1,
        "HorizontalPodAutoscaler": 1,
    },
    "overlays/cpu": {
        "ServiceAccount": 1,
        "ConfigMap": 1,
        "Service": 2,
        "Deployment": 1,
        "PodDisruptionBudget": 1,
        "HorizontalPodAutoscaler": 1,
    },
    "overlays/canary": {
        "ServiceAccount": 2,
        "ConfigMap": 2,
        "Service": 4,
        "Deployment": 2,
        "PodDisruptionBudget": 1,
        "HorizontalPodAutoscaler": 1,
        "GRPCRoute": 1,
    },
    "jobs": {"PersistentVolumeClaim": 1, "ConfigMap": 1, "Service": 1, "Job": 3},
    "monitoring": {"ConfigMap": 2, "ServiceMonitor": 2, "PrometheusRule": 2},
    "monitor": {"ServiceAccount": 1, "ConfigMap": 1, "Service": 1, "Deployment": 1},
}


@pytest.mark.parametrize("target", TARGETS)
def test_kustomization_renders_the_expected_objects(target: str) -> None:
    assert dict(Counter(o["kind"] for o in render(target))) == EXPECTED_KINDS[target]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("target", TARGETS)
def test_builtin_objects_validate_strictly(target: str, version: str) -> None:
    builtin = [o for o in render(target) if o["kind"] not in CRD_KINDS]
    assert builtin
    for obj in builtin:
        kubernetes_validate.validate(obj, version, strict=True)  # raises ValidationError naming the field


def test_validation_rejects_a_misspelt_field() -> None:
    """The strict schema check can fail: a typo in a probe is caught."""
    deployment = find(render("overlays/gpu"), "Deployment", "triton")
    broken: dict[str, Any] = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[0], strict=True)


def test_canary_grpcroute_splits_between_services_that_exist() -> None:
    objects = render("overlays/canary")
    route = find(objects, "GRPCRoute", "triton")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["metadata"]["namespace"] == "triton"
    assert route["spec"]["parentRefs"] and all(ref.get("name") for ref in route["spec"]["parentRefs"])
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    (rule,) = route["spec"]["rules"]
    refs = rule["backendRefs"]
    assert [r["name"] for r in refs] == ["triton", "triton-canary"]
    assert sum(r["weight"] for r in refs) == 100 and all(0 < r["weight"] < 100 for r in refs)
    assert refs[0]["weight"] > refs[1]["weight"], "the canary gets the smaller share"
    for ref in refs:
        service = services[ref["name"]]
        assert service["spec"]["type"] == "ClusterIP"
        grpc = [p for p in service["spec"]["ports"] if p["port"] == ref["port"]]
        assert grpc and grpc[0]["name"] == "grpc"
    for match in rule["matches"]:
        assert match["method"]["service"] == "inference.GRPCInferenceService"


def test_canary_services_select_only_their_own_pods() -> None:
    objects = render("overlays/canary")
    for name in ("triton", "triton-canary"):
        pods = find(objects, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        selected = [
            o["metadata"]["name"]
            for o in objects
            if o["kind"] == "Deployment"
            and all(
                o["spec"]["template"]["metadata"]["labels"].get(k) == v
                for k, v in find(objects, "Service", name)["spec"]["selector"].items()
            )
        ]
        assert selected == [name], f"Service {name} selects {selected} (pod labels {pods})"


def test_canary_serves_another_repository_with_one_replica_and_no_autoscaling() -> None:
    objects = render("overlays/canary")
    stable, canary = find(objects, "Deployment", "triton"), find(objects, "Deployment", "triton-canary")
    assert canary["spec"]["replicas"] == 1 and "replicas" not in stable["spec"]
    configs = {o["metadata"]["name"]: o["data"]["MODEL_REPOSITORY"] for o in objects if o["kind"] == "ConfigMap"}

    def repository(deployment: dict[str, Any]) -> str:
        env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        ref = next(e for e in env if e["name"] == "MODEL_REPOSITORY")["valueFrom"]["configMapKeyRef"]
        return configs[ref["name"]]

    assert repository(stable) != repository(canary)
    assert [o["spec"]["scaleTargetRef"]["name"] for o in objects if o["kind"] == "HorizontalPodAutoscaler"] == [
        "triton"
    ]
