"""The Kubernetes manifests in deployments/kuberay and the image they name.

Kubernetes objects (the Service, the PodDisruptionBudget and every pod
template inside the RayService) are validated strictly against the
Kubernetes OpenAPI schemas that kubernetes-validate ships. KubeRay's CRD
schema is not on any package registry, so the RayService's own fields are
checked against the field names of KubeRay's v1 API reference, and its
Serve config against Ray's schema and our settings.
"""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import ray
import yaml
from ray.serve.schema import ServeDeploySchema

from t5electra.deployments.health import LIVENESS
from t5electra.deployments.settings import Settings, args_from_serve_config

from support import REPOSITORY

pytestmark = pytest.mark.unit

ROOT = REPOSITORY
KUBERAY = ROOT / "deployments" / "kuberay"
K8S_VERSION = kubernetes_validate.latest_version()

# Field names of KubeRay's ray.io/v1 API (v1.5) for the objects used here.
RAYSERVICE_SPEC = {
    "serveConfigV2",
    "rayClusterConfig",
    "serveService",
    "upgradeStrategy",
    "excludeHeadPodFromServeSvc",
    "rayClusterDeletionDelaySeconds",
}
RAYCLUSTER_SPEC = {
    "rayVersion",
    "enableInTreeAutoscaling",
    "autoscalerOptions",
    "authOptions",
    "headGroupSpec",
    "workerGroupSpecs",
    "headServiceAnnotations",
    "gcsFaultToleranceOptions",
    "suspend",
    "managedBy",
}
HEAD_GROUP = {"rayStartParams", "template", "serviceType", "headService", "enableIngress"}
WORKER_GROUP = {
    "groupName",
    "replicas",
    "minReplicas",
    "maxReplicas",
    "rayStartParams",
    "template",
    "scaleStrategy",
    "numOfHosts",
    "idleTimeoutSeconds",
    "suspend",
}


def _documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((KUBERAY / name).read_text()) if d]


@pytest.fixture(scope="module")
def rayservice() -> dict[str, Any]:
    (service,) = _documents("rayservice.yaml")
    return service


def _pod_templates(rayservice: dict[str, Any]) -> dict[str, dict[str, Any]]:
    cluster = rayservice["spec"]["rayClusterConfig"]
    templates = {"head": cluster["headGroupSpec"]["template"]}
    for group in cluster["workerGroupSpecs"]:
        templates[group["groupName"]] = group["template"]
    return templates


def _validate(resource: dict[str, Any]) -> None:
    kubernetes_validate.validate(resource, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    (kustomization,) = _documents("kustomization.yaml")
    listed = set(kustomization["resources"]) | set(kustomization["configurations"])
    assert listed == {p.name for p in KUBERAY.glob("*.yaml")} - {"kustomization.yaml"}
    (config,) = _documents("kustomizeconfig.yaml")
    image = kustomization["images"][0]["name"]
    for spec in config["images"]:
        assert spec["kind"] == "RayService"
    for template in _pod_templates(_documents("rayservice.yaml")[0]).values():
        assert all(c["image"].split(":")[0] == image for c in template["spec"]["containers"])


def test_rayservice_fields_are_kuberays(rayservice: dict[str, Any]) -> None:
    assert (rayservice["apiVersion"], rayservice["kind"]) == ("ray.io/v1", "RayService")
    spec = rayservice["spec"]
    assert set(spec) <= RAYSERVICE_SPEC
    cluster = spec["rayClusterConfig"]
    assert set(cluster) <= RAYCLUSTER_SPEC
    assert set(cluster["headGroupSpec"]) <= HEAD_GROUP
    for group in cluster["workerGroupSpecs"]:
        assert set(group) <= WORKER_GROUP
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    # The image's Ray must be the one the cluster says it runs.
    assert cluster["rayVersion"] == ray.__version__
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["authOptions"] == {"mode": "token"}


def test_serve_config_is_the_cluster_profile_and_valid(rayservice: dict[str, Any]) -> None:
    embedded = yaml.safe_load(rayservice["spec"]["serveConfigV2"])
    assert embedded == yaml.safe_load((ROOT / "deployments" / "cluster-gpu.yaml").read_text())
    ServeDeploySchema.model_validate(embedded)
    Settings.load(yaml_args=args_from_serve_config(embedded))


def test_pod_templates_are_valid_kubernetes(rayservice: dict[str, Any]) -> None:
    for name, template in _pod_templates(rayservice).items():
        _validate({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": name}, "template": template})
        for container in template["spec"]["containers"]:
            resources = container["resources"]
            assert resources["requests"] and resources["limits"], name


def test_probes_ask_grpc_health_on_the_serve_port(rayservice: dict[str, Any]) -> None:
    port = yaml.safe_load(rayservice["spec"]["serveConfigV2"])["grpc_options"]["port"]
    for name, template in _pod_templates(rayservice).items():
        (container,) = template["spec"]["containers"]
        assert container["readinessProbe"]["grpc"] == {"port": port, "service": ""}, name
        assert port in {p["containerPort"] for p in container["ports"]}, name
        if "livenessProbe" in container:
            assert container["livenessProbe"]["grpc"] == {"port": port, "service": LIVENESS}, name
            assert container["startupProbe"]["grpc"] == {"port": port, "service": LIVENESS}, name


def test_gpu_workers_ask_for_a_gpu_and_models_fit_it(rayservice: dict[str, Any]) -> None:
    (group,) = rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    (container,) = group["template"]["spec"]["containers"]
    gpus = int(container["resources"]["limits"]["nvidia.com/gpu"])
    settings = Settings.load(yaml_args=args_from_serve_config(yaml.safe_load(rayservice["spec"]["serveConfigV2"])))
    assert settings.t5.num_gpus <= gpus and settings.electra.num_gpus < 1


def test_serve_service_exposes_the_grpc_port_for_a_mesh(rayservice: dict[str, Any]) -> None:
    service = {"apiVersion": "v1", "kind": "Service", **rayservice["spec"]["serveService"]}
    _validate(service)
    (port,) = service["spec"]["ports"]
    grpc_port = yaml.safe_load(rayservice["spec"]["serveConfigV2"])["grpc_options"]["port"]
    assert port["port"] == port["targetPort"] == grpc_port
    assert port["name"].startswith("grpc") and port["appProtocol"] == "grpc"


def test_disruption_budget_covers_the_gpu_workers(rayservice: dict[str, Any]) -> None:
    (budget,) = _documents("pdb.yaml")
    _validate(budget)
    (group,) = rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    labels = group["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    head_labels = rayservice["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["metadata"]["labels"]
    assert not budget["spec"]["selector"]["matchLabels"].items() <= head_labels.items()


def test_image_installs_the_package_on_a_cuda_base() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text().splitlines()
    assert next(line for line in dockerfile if line.startswith("FROM ")).startswith("FROM nvidia/cuda:")
    assert any("pip install" in line and "/home/ray/src" in line for line in dockerfile)
    assert "USER ray" in dockerfile
