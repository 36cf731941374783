"""A real Ray Serve application on free local ports, for integration tests.

Settings differ from the defaults only where tests need to provoke a
behaviour quickly: a batch wait long enough for concurrent requests to meet,
a small T5 queue to reach overload, and an ELECTRA deployment that autoscales
with short delays.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import ray
from ray import serve
from ray.serve.api import RunTarget

from t5electra.clients import NO_RETRY, Client, T5ElectraError
from t5electra.deployments.app import build_app, configure_ray_environment, grpc_options
from t5electra.deployments.names import DETECTOR, INGRESS, TEXT_GENERATOR
from t5electra.deployments.settings import Settings
from t5electra.protocol.v1 import detection_pb2_grpc, generation_pb2_grpc
from t5electra.tools.bench.processes import free_port

from .waiting import wait_for

T5_QUEUE = 24


def test_settings(port: int, http_port: int) -> Settings:
    return Settings.load(
        port=port,
        http_port=http_port,
        t5={
            "max_batch_size": 16,
            "batch_wait_timeout_s": 0.05,
            "queued_batches": 1,
            "max_queued_requests": T5_QUEUE,
            "num_cpus": 0.4,
        },
        electra={
            "generator_model": "embedded",
            "max_batch_size": 32,
            "batch_wait_timeout_s": 0.05,
            "num_cpus": 0.4,
            "autoscaling": {
                "min_replicas": 1,
                "max_replicas": 2,
                "target_ongoing_requests": 2,
                "upscale_delay_s": 1,
                "downscale_delay_s": 4,
                "look_back_period_s": 2,
            },
        },
    )


@dataclass
class ServerUnderTest:
    settings: Settings
    address: str
    metrics_port: int
    startup_health: list[tuple[str, bool, bool]]

    @classmethod
    @contextmanager
    def start(cls) -> Iterator[ServerUnderTest]:
        port, http_port, metrics_port = free_port(), free_port(), free_port()
        settings = test_settings(port, http_port)
        # Ray Serve pushes the load figures autoscaling decides on every 10 s
        # by default; a test that waits for a scale-up wants them every second.
        os.environ["RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S"] = "1"
        os.environ["RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S"] = "1"
        configure_ray_environment(settings)
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            logging_level=logging.WARNING,
            _metrics_export_port=metrics_port,
        )
        try:
            serve.start(grpc_options=grpc_options(port), http_options={"host": "127.0.0.1", "port": http_port})
            _deploy_without_waiting(settings)
            address = f"127.0.0.1:{port}"
            health = _watch_startup(address, settings.app_name)
            yield cls(settings, address, metrics_port, health)
        finally:
            serve.shutdown()
            ray.shutdown()

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.address)

    def generation_stub(self, channel: grpc.Channel) -> generation_pb2_grpc.TextGenerationStub:
        return generation_pb2_grpc.TextGenerationStub(channel)

    def detection_stub(self, channel: grpc.Channel) -> detection_pb2_grpc.ReplacementDetectionStub:
        return detection_pb2_grpc.ReplacementDetectionStub(channel)

    def client(self, **kwargs) -> Client:
        return Client(self.address, **kwargs)

    def replicas(self, deployment: str) -> int:
        app = serve.status().applications[self.settings.app_name]
        return app.deployments[deployment].replica_states.get("RUNNING", 0)

    def t5_info(self) -> dict:
        handle = serve.get_deployment_handle(TEXT_GENERATOR, self.settings.app_name)
        return handle.info.remote().result()

    def deploy_variant(self, name: str, running: tuple[str, ...], timeout: float = 180, **updates: Any) -> str:
        """Deploys a second application, the session's settings with
        ``updates`` (ELECTRA kept to one replica), and waits until the
        ``running`` deployments have a running replica. While it exists,
        calls must name their application in metadata."""
        electra = self.settings.electra.model_copy(
            update={"autoscaling": self.settings.electra.autoscaling.model_copy(update={"max_replicas": 1})}
        )
        settings = self.settings.model_copy(
            update={"app_name": name, "route_prefix": f"/{name}", "electra": electra, **updates}
        )
        _deploy_without_waiting(settings)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            app = serve.status().applications.get(name)
            states = {n: d.replica_states.get("RUNNING", 0) for n, d in (app.deployments.items() if app else [])}
            if all(states.get(deployment) for deployment in running):
                return name
            time.sleep(0.5)
        raise TimeoutError(f"application {name}: {running} not all running after {timeout}s")

    def deploy_broken_t5(self, name: str) -> str:
        """A second application whose T5 checkpoint does not exist: its
        ingress and ELECTRA (without a generator) run, T5 never does."""
        t5 = self.settings.t5.model_copy(update={"model": "/nonexistent/t5-checkpoint"})
        one = self.settings.electra.autoscaling.model_copy(update={"max_replicas": 1})
        electra = self.settings.electra.model_copy(update={"generator_model": None, "autoscaling": one})
        return self.deploy_variant(name, (INGRESS, DETECTOR), t5=t5, electra=electra)

    def delete_app(self, name: str, timeout: float = 60) -> None:
        """Deletes an application and waits until the proxy routes calls
        without application metadata again."""
        serve.delete(name)
        deadline = time.monotonic() + timeout
        with Client(self.address, retry=NO_RETRY) as client:
            while True:
                try:
                    client.health(timeout=5)
                    return
                except T5ElectraError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)

    def replica_pids(self, deployment: str) -> list[int]:
        """Process ids of the deployment's running replicas, from the
        controller's instance details (what `t5electra status` reads)."""
        app = serve.context._get_global_client().get_serve_details()["applications"][self.settings.app_name]
        replicas = app["deployments"][deployment]["replicas"]
        return [r["pid"] for r in replicas if r["state"] == "RUNNING"]

    def replica_log(self, deployment: str) -> str:
        """The text of ``deployment``'s replica logs in this session's Ray
        (Serve writes one file per replica; Ray names no public way to
        this session's folder, hence its node's)."""
        serve_logs = Path(ray._private.worker._global_node.get_logs_dir_path()) / "serve"
        pattern = f"replica_{self.settings.app_name}_{deployment}_*.log"
        return "".join(path.read_text(errors="replace") for path in sorted(serve_logs.glob(pattern)))

    def wait_until_idle(self, timeout: float = 120) -> None:
        """Until the T5 replica decodes nothing; fails the test after ``timeout`` s."""
        wait_for(lambda: not self.t5_info()["decoding"], what="the T5 replica to be idle", timeout=timeout, poll_s=0.1)


def _deploy_without_waiting(settings: Settings) -> None:
    """Deploys and returns once the ingress exists, before the models load
    (or fail to), so that tests can watch the application come up."""
    target = RunTarget(build_app(settings), name=settings.app_name, route_prefix=settings.route_prefix)
    serve.run_many([target], wait_for_applications_running=False)


def _models_running(app_name: str) -> bool:
    app = serve.status().applications.get(app_name)
    if app is None:
        return False
    return all(
        app.deployments[name].replica_states.get("RUNNING", 0) > 0
        for name in (TEXT_GENERATOR, DETECTOR)
        if name in app.deployments
    ) and {TEXT_GENERATOR, DETECTOR} <= set(app.deployments)


def _watch_startup(address: str, app_name: str, timeout: float = 300) -> list[tuple[str, bool, bool]]:
    """Polls grpc.health.v1 until SERVING; records each answer between whether
    Serve reported both models running just before and just after it."""
    seen: list[tuple[str, bool, bool]] = []
    deadline = time.monotonic() + timeout
    with Client(address) as client:
        while time.monotonic() < deadline:
            running_before = _models_running(app_name)
            try:
                status = client.health(timeout=2)
            except T5ElectraError as error:  # the proxy answers before the app exists
                status = f"error:{error.code.name}"
            seen.append((status, running_before, _models_running(app_name)))
            if status == "SERVING":
                return seen
            time.sleep(0.2)
    raise TimeoutError(f"server not SERVING after {timeout}s: {seen[-5:]}")
