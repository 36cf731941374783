"""What runs where on a Ray cluster, and removing it: ``t5electra status``
and ``t5electra shutdown``.

Placement comes from the Serve controller's instance details (the data
behind Ray's dashboard and ``serve status``), which name the node of every
replica and proxy; node liveness and resources come from the GCS. Neither
needs the dashboard, so the same commands work against the Ray that
``t5electra serve`` starts for itself.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import asdict, dataclass, field
from typing import Any

import ray
from ray import serve
from ray.serve.exceptions import RayServeException

HEAD_RESOURCE = "node:__internal_head__"
_STANDARD_RESOURCES = {"CPU", "GPU", "memory", "object_store_memory"}


@dataclass(frozen=True)
class Node:
    node_id: str
    ip: str
    alive: bool
    head: bool
    cpus: float
    gpus: float
    custom_resources: dict[str, float]


@dataclass(frozen=True)
class Replica:
    replica_id: str
    state: str
    node_id: str | None
    pid: int | None


@dataclass(frozen=True)
class Deployment:
    name: str
    status: str
    target_replicas: int
    replicas: list[Replica]
    message: str

    @property
    def running(self) -> int:
        return sum(r.state == "RUNNING" for r in self.replicas)


@dataclass(frozen=True)
class Application:
    name: str
    status: str
    route_prefix: str | None
    deployments: list[Deployment]
    message: str


@dataclass(frozen=True)
class ClusterStatus:
    address: str
    nodes: list[Node]
    serve_running: bool
    proxies: dict[str, str] = field(default_factory=dict)
    applications: list[Application] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        """The status as a terminal would want it: nodes, then each
        application's deployments with every replica's node."""
        labels = {node.node_id: "head" if node.head else f"node-{i}" for i, node in enumerate(self.nodes)}
        alive = sum(node.alive for node in self.nodes)
        lines = [f"Ray cluster {self.address}: {alive} of {len(self.nodes)} nodes alive"]
        for node in self.nodes:
            if node.alive:
                extra = "".join(f", {k}={v:g}" for k, v in sorted(node.custom_resources.items()))
                proxy = f", proxy {self.proxies[node.node_id]}" if node.node_id in self.proxies else ""
                state = f"alive  CPU {node.cpus:g}, GPU {node.gpus:g}{extra}{proxy}"
            else:
                state = "DEAD"
            lines.append(f"  {labels[node.node_id]:<7} {node.node_id[:12]}  {node.ip:<15} {state}")
        if not self.serve_running:
            lines.append("Ray Serve is not running on this cluster.")
            return "\n".join(lines)
        if not self.applications:
            lines.append("No applications.")
        for app in self.applications:
            lines.append(f"application {app.name} {app.status} (route prefix {app.route_prefix})")
            if app.message:
                lines.append(f"  {app.message}")
            for deployment in app.deployments:
                lines.append(
                    f"  {deployment.name:<14} {deployment.status:<10} "
                    f"{deployment.running}/{deployment.target_replicas} replicas running"
                )
                for replica in deployment.replicas:
                    where = labels.get(replica.node_id or "", (replica.node_id or "no node yet")[:12])
                    lines.append(f"    {replica.replica_id:<10} {replica.state:<9} on {where:<7} pid {replica.pid}")
        return "\n".join(lines)


def connect(address: str) -> None:
    """Joins the cluster as a driver; call
    :func:`~t5electra.tools.serving.ray_auth.present_cluster_token` before
    importing this module. An explicit address where nothing listens fails
    at once: Ray itself would retry it for minutes."""
    if address != "auto":
        host, _, port = address.removeprefix("ray://").rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except (OSError, ValueError) as error:
            raise ConnectionError(f"nothing answers at {address} ({error})") from error
    ray.init(address=address, namespace="t5electra", logging_level=logging.WARNING, log_to_driver=False)


def read_status(address: str) -> ClusterStatus:
    """The connected cluster's nodes and Serve applications; ``address`` is
    what the caller joined, shown where Ray cannot tell its GCS address
    (a ray:// client connection)."""
    # Head first, then live nodes, so that labels stay put while nodes come and go.
    nodes = sorted((_node(raw) for raw in ray.nodes()), key=lambda n: (not n.head, not n.alive, n.node_id))
    address = getattr(ray.get_runtime_context(), "gcs_address", None) or address
    try:
        details = serve.context._get_global_client(raise_if_no_controller_running=True).get_serve_details()
    except RayServeException:
        return ClusterStatus(address, nodes, serve_running=False)
    proxies = {node_id: _text(proxy["status"]) for node_id, proxy in (details.get("proxies") or {}).items()}
    applications = [_application(app) for app in (details.get("applications") or {}).values()]
    return ClusterStatus(address, nodes, True, proxies, applications)


def shutdown(app_name: str | None) -> list[str]:
    """Deletes one application (its replicas drain first), or with None
    every application and Serve itself (controller and proxies). Returns
    the names of the applications removed."""
    present = list(serve.status().applications)
    if app_name is None:
        serve.shutdown()
        return present
    if app_name not in present:
        raise LookupError(f"no application named {app_name!r} (applications: {', '.join(present) or 'none'})")
    serve.delete(app_name)
    return [app_name]


def _node(raw: dict[str, Any]) -> Node:
    resources: dict[str, float] = raw.get("Resources") or {}
    custom = {
        name: amount
        for name, amount in resources.items()
        if name not in _STANDARD_RESOURCES and not name.startswith("node:") and not name.startswith("accelerator_type")
    }
    return Node(
        node_id=raw["NodeID"],
        ip=raw.get("NodeManagerAddress", ""),
        alive=bool(raw.get("Alive")),
        head=HEAD_RESOURCE in resources,
        cpus=resources.get("CPU", 0.0),
        gpus=resources.get("GPU", 0.0),
        custom_resources=custom,
    )


def _application(raw: dict[str, Any]) -> Application:
    deployments = [
        Deployment(
            name=name,
            status=_text(deployment["status"]),
            target_replicas=deployment.get("target_num_replicas") or 0,
            replicas=[
                Replica(r.get("replica_id", ""), _text(r.get("state")), r.get("node_id"), r.get("pid"))
                for r in deployment.get("replicas") or []
            ],
            message=deployment.get("message") or "",
        )
        for name, deployment in (raw.get("deployments") or {}).items()
    ]
    return Application(
        name=raw["name"],
        status=_text(raw["status"]),
        route_prefix=raw.get("route_prefix"),
        deployments=deployments,
        message=raw.get("message") or "",
    )


def _text(value: Any) -> str:
    """Serve's details carry its status enums; callers get their names."""
    return str(getattr(value, "value", value))
